"""`python -m viewer --checkpoint runs/<name> [--follow ...]`: the viewer on its own, with the
flags of `run.py watch` (how `train-dqn --watch` starts it in a separate process)."""

from __future__ import annotations

import sys

import tyro

from playground.errors import UserError
from viewer.config import WatchConfig


def main(argv: list[str] | None = None) -> int:
    cfg = tyro.cli(WatchConfig, args=argv)
    from viewer.app import watch

    try:
        watch(cfg)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
