"""A GAN run's fixed-noise samples over training, side by side in one PNG (from its TensorBoard
events: the same noise at every step, so the pictures show the generator learning).

    python -m benchmarks.gan_progress runs/gan-digits --steps 500 2000 9000 --output docs/x.png
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image, ImageDraw

from playground import tags
from playground.logger import EventReader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="steps to show")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--tag", default=tags.SAMPLES)
    args = parser.parse_args()

    grids = dict(EventReader(args.run_dir, images=0).reload().images(args.tag))
    if not grids:
        raise SystemExit(f"error: {args.run_dir} has no {args.tag} images")
    chosen = []
    for wanted in args.steps:
        step = min(grids, key=lambda available: abs(available - wanted))
        chosen.append((step, Image.open(io.BytesIO(grids[step])).convert("RGB")))
    width, height = chosen[0][1].size
    label = 22
    canvas = Image.new("RGB", (len(chosen) * (width + 8) - 8, height + label), (18, 20, 26))
    draw = ImageDraw.Draw(canvas)
    for index, (step, image) in enumerate(chosen):
        left = index * (width + 8)
        canvas.paste(image, (left, label))
        draw.text((left + 4, 4), f"step {step:,}", fill=(226, 229, 236))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.output)
    print(f"wrote {args.output} (steps {', '.join(str(step) for step, _ in chosen)})")


if __name__ == "__main__":
    main()
