"""Measurements run on purpose: `python -m benchmarks.<name>` (and `run.py bench`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def finish(results: Any, json_path: Path | None) -> None:
    """Print the core count the figures were taken on and write them to `json_path` if given."""
    print(f"cores: {os.cpu_count()}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1) + "\n")
