"""Settings whose Atari 100k runs `docs/atari100k-scores.json` keeps, side by side on one game:
one panel per setting with each seed's training returns and its final score over 100 games,
so an ablation's arms read at a glance (the table beside it is in docs/rainbow.md).

    python -m benchmarks.atari100k_arms --game Boxing --plot docs/ablation-boxing.png \\
        --settings "atari-100k, the ALE's reset (2026-12-06 to 07)" \\
        "atari-100k --distributional c51, the ALE's reset" "atari-100k-per, the ALE's reset" \\
        "atari-100k-c51-per, the ALE's reset (2026-12-07)" \\
        "atari-100k-spr, the ALE's reset (2026-12-06 to 07)"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.atari100k import RANDOM_HUMAN, draw_runs, kept_runs

SCORES = Path(__file__).resolve().parents[1] / "docs" / "atari100k-scores.json"


def plot_arms(scores: Path, game: str, settings: list[str], path: Path) -> list[str]:
    """Draw one panel per setting of `settings` that has runs of `game` in `scores`, on a
    shared y axis; returns the settings drawn (none: nothing written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [(setting, kept_runs(scores, setting, game)) for setting in settings]
    arms = [(setting, runs) for setting, runs in arms if runs]
    if not arms:
        return []
    figure, axes = plt.subplots(
        1, len(arms), figsize=(3.6 * len(arms), 3.3), dpi=100, squeeze=False, sharey=True
    )
    for axis, (setting, runs) in zip(axes[0], arms, strict=True):
        finals = [run["final"] for run in runs]
        title = f"{setting}: {np.mean(finals):.1f} over {len(runs)} seeds"
        draw_runs(axis, runs, game, title)
    figure.suptitle(f"{game}, Atari 100k: training games and the final 100 (dots)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return [setting for setting, _ in arms]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", required=True, choices=sorted(RANDOM_HUMAN))
    parser.add_argument("--settings", nargs="+", required=True, help="the scores file's names")
    parser.add_argument("--scores", type=Path, default=SCORES)
    parser.add_argument("--plot", type=Path, required=True)
    args = parser.parse_args()
    if not args.scores.is_file():
        raise SystemExit(f"no scores file at {args.scores}")
    drawn = plot_arms(args.scores, args.game, args.settings, args.plot)
    if not drawn:
        raise SystemExit(f"{args.scores} keeps no {args.game} run of these settings")
    missing = [setting for setting in args.settings if setting not in drawn]
    if missing:
        print(f"no {args.game} runs kept of: {', '.join(missing)}")
    print(f"wrote {args.plot} ({len(drawn)} settings)")


if __name__ == "__main__":
    main()
