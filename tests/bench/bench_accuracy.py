"""Track accuracy against Meta-World ground truth: prints a table per episode.

    .venv/bin/python -m tests.bench.bench_accuracy --seed 0 --camera static

Renders one episode per task (full length, up to 120 frames), runs decode -> track -> lift with
the `sim` preset (given depth and cameras) and scores every written track against the true
trajectory of its own query pixel (tasks/sim/score.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from flows.environment import apply_defaults

apply_defaults()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tasks.config import get_preset  # noqa: E402
from tasks.run.discover import discover  # noqa: E402
from tasks.extract.motion_filter import track_coverage  # noqa: E402
from tasks.sim.score import grade_episode  # noqa: E402

TASKS = ["pick-place", "drawer-open", "button-press", "push", "reach"]
COLUMNS = [
    ("tracks", "n_tracks", "{:d}"),
    ("moving", "n_moving", "{:d}"),
    ("moving median cm", "moving_median_cm", "{:.2f}"),
    ("moving p90 cm", "moving_p90_cm", "{:.2f}"),
    ("moving coverage", "moving_coverage", "{:.2f}"),
    ("all coverage", "coverage", "{:.2f}"),
    ("static drift median cm", "static_drift_median_cm", "{:.3f}"),
    ("false visible", "false_visible", "{:.3f}"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--camera", default="static")
    ap.add_argument("--max-steps", type=int, default=120)
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()

    from tasks.sim.generate import generate_corpus

    corpus = Path(tempfile.mkdtemp(prefix="mu0-acc-"))
    generate_corpus(corpus, len(TASKS), TASKS, camera=args.camera, max_steps=args.max_steps, seed=args.seed)
    cfg = get_preset("sim")
    t = Table(title=f"track accuracy vs ground truth ({args.camera} camera, seeds {args.seed}..{args.seed + 4})")
    header = ["episode", "frames", "patch coverage"] + [c[0] for c in COLUMNS]
    for h in header:
        t.add_column(h, justify="right")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for src in discover(str(corpus), cfg):
        ep, score = grade_episode(src, cfg)
        s = score.as_dict()
        cov = track_coverage(ep.tracks_uv, ep.visible, *ep.image_size, cfg.filter.coverage_grid)
        row = [Path(src.uri).name, str(ep.n_frames), f"{cov:.2f}"] + [f.format(s[k]) for _, k, f in COLUMNS]
        t.add_row(*row)
        md.append("| " + " | ".join(row) + " |")
    Console().print(t)
    if args.md:
        args.md.write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
