"""What watching from a browser costs a training run: `train-dqn` steps/s without a viewer, with
`--watch web` and nobody watching, and with 1 and 5 headless Chromium pages open, run one after
the other (in rounds, so the machine's drift hits every setting alike); and what the stream
carries (messages per second and bytes per second, as a page counts them).

    python -m benchmarks.web_overhead --rounds 2 --steps 20000 --json runs/web_overhead.json
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import finish
from playground import tags
from playground.logger import read_scalars

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def training_rate(run_dir: Path, after_step: int) -> float:
    """Mean charts/sps of the log points after `after_step` (learning is on by then)."""
    values = [value for step, value, _ in read_scalars(run_dir, tags.SPS) if step > after_step]
    return sum(values) / len(values)


def one_run(setting: str, pages: int, steps: int, runs_dir: Path, browser) -> dict:
    port = free_port()
    name = f"{setting}-{pages}-{time.time_ns()}"
    command = [
        sys.executable, str(ROOT / "run.py"), "train-dqn", "--env-id", "Playground/Catch-v0",
        "--total-steps", str(steps), "--eval-every", "0", "--runs-dir", str(runs_dir),
        "--run-name", name, "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    if setting == "web":
        command += ["--watch", "web", "--watch-port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    opened = []
    stream = None
    if pages:
        deadline = time.monotonic() + 120
        while not opened and time.monotonic() < deadline:
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/", timeout=3_000)
                opened.append(page)
            except Exception:  # not serving yet
                page.close()
                time.sleep(0.5)
        for _ in range(pages - 1):
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            opened.append(page)
        first = opened[0]
        first.wait_for_function("window.viewerState() && window.viewerState().frames > 5")
        start = first.evaluate("window.viewerStats()")
        time.sleep(10)
        end = first.evaluate("window.viewerStats()")
        seconds = end["seconds"] - start["seconds"]
        stream = {
            "messages_per_second": (end["messages"] - start["messages"]) / seconds,
            "bytes_per_second": (end["bytes"] - start["bytes"]) / seconds,
        }
    process.wait()
    for page in opened:
        page.close()
    if process.returncode != 0:
        raise SystemExit(process.stderr.read().decode()[-2000:])
    return {
        "setting": setting,
        "pages": pages,
        "steps_per_second": training_rate(runs_dir / name, after_step=2_000),
        "stream": stream,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    settings = [("none", 0), ("web", 0), ("web", 1), ("web", 5)]
    results = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        for round_index in range(args.rounds):
            for setting, pages in settings:
                result = one_run(setting, pages, args.steps, Path(folder), browser)
                result["round"] = round_index + 1
                results.append(result)
                stream = result["stream"]
                print(
                    f"round {round_index + 1}: --watch {setting}, {pages} page(s): "
                    f"{result['steps_per_second']:.1f} steps/s"
                    + (
                        f"; stream {stream['messages_per_second']:.1f} messages/s, "
                        f"{stream['bytes_per_second'] / 1024:.1f} KiB/s"
                        if stream
                        else ""
                    ),
                    flush=True,
                )
        browser.close()
    finish(results, args.json)


if __name__ == "__main__":
    main()
