"""The extraction sweep's targets on a fixed slice of it (issue 17): one tuned-on and one held-out task, static
and 30 deg/s orbiting camera, 20 and 60 fps sources ingested with the default preset (10 fps kept), given and
estimated camera poses: 16 rows, graded by the same code as `tests/bench/bench_accuracy.py --sweep` (its full
table is in BENCHMARKS.md).

Every row must be `ok` and meet the median, coverage, drift and ATE targets. The closest is dial-turn's
orbit at 20 fps with estimated poses: track coverage 0.654-0.695 over 14 renders against the 0.60 floor
(0.571-0.666 before keyframes whose chunk registration disagrees with the pose graph were untied;
BENCHMARKS.md). The moving p90 is the one target an orbit episode meets only marginally (4-5.3 cm on these
rows over repeated renders; MuJoCo's images differ slightly from render to render): at least 3 rows in 4 must
meet it, and none may exceed 6 cm.
"""

from __future__ import annotations

import pytest

from tests.bench.bench_accuracy import SweepEpisode, grade_sweep_row, render_sweep_episode, target_results

pytestmark = pytest.mark.slow

SLICE = [("reach", 43), ("dial-turn", 11)]  # (task, seed) as the sweep seeds them; reach was tuned on, dial-turn not
EPISODES = [
    SweepEpisode(task, camera, speed, fps, seed, 60)
    for task, seed in SLICE
    for camera, speed in (("static", None), ("orbit", 30.0))
    for fps in (20, 60)
]
SHOWN = ("task", "camera", "fps", "pose", "status", "reason", "moving_median_cm", "moving_p90_cm", "moving_coverage",
         "track_coverage", "static_drift_cm", "ate_cm")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    work = tmp_path_factory.mktemp("sweep")
    out = []
    for spec in EPISODES:
        render_sweep_episode(spec, work)
        out += [grade_sweep_row(spec, work, pose) for pose in ("given", "estimated")]
    assert len(out) == 16
    return out


def test_every_row_is_ok_and_meets_the_median_coverage_drift_and_ate_targets(rows):
    for row in rows:
        missed = [k for k, met in target_results(row).items() if met is False and k != "p90"]
        shown = ", ".join(f"{k}={row[k]}" for k in SHOWN)
        assert row["frames_stored"] == 30 and not missed, f"missed {missed}: {shown}"


def test_the_moving_p90_target_holds_in_three_rows_of_four_and_never_far_off(rows):
    p90 = [row["moving_p90_cm"] for row in rows]
    assert sum(p <= 5.0 for p in p90) >= 12 and max(p90) <= 6.0, [(r["task"], r["camera"], r["fps"], r["pose"], p) for r, p in zip(rows, p90)]
