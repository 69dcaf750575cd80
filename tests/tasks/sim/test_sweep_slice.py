"""The extraction sweep's targets on a fixed slice of it (issue 17): one tuned-on and one held-out task, static
and 30 deg/s orbiting camera, 20 and 60 fps sources ingested with the default preset (10 fps kept), given and
estimated camera poses: 16 rows, graded by the same code as `tests/bench/bench_accuracy.py --sweep` (its full
table is in BENCHMARKS.md).

Every row must be `ok` and meet the median, coverage and drift targets. Two targets an orbiting camera meets
with little margin get the sweep's own reading, a pass rate, plus a cap on the miss:
- moving p90 (4-5.3 cm on these rows over repeated renders): at least 3 rows in 4 within 5 cm, none over 6 cm;
- ATE (0.02-0.08 cm static, 0.2-0.4 cm orbiting here): every estimated row under 1 cm but at most one, which
  stays under 2 cm. MuJoCo's images depend on the machine that renders them: CI's render of reach, orbit,
  60 fps read 1.35 cm where 17 renders here and 20 noisy copies of them read 0.17-0.36 cm (BENCHMARKS.md).
The closest `ok` is dial-turn's orbit at 20 fps with estimated poses: track coverage 0.654-0.695 over 14 renders
against the 0.60 floor. The rows are rendered per test run, so CI's one rerun of a failure renders afresh.
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


@pytest.fixture
def rows(tmp_path):
    out = []
    for spec in EPISODES:
        render_sweep_episode(spec, tmp_path)
        out += [grade_sweep_row(spec, tmp_path, pose) for pose in ("given", "estimated")]
    assert len(out) == 16
    return out


def _shown(row: dict) -> str:
    return ", ".join(f"{k}={row[k]}" for k in SHOWN)


def test_the_slice_meets_the_sweep_targets(rows):
    misses = []
    for row in rows:
        missed = [k for k, met in target_results(row).items() if met is False and k not in ("p90", "ate")]
        if row["frames_stored"] != 30 or missed:
            misses.append(f"missed {missed or 'frames'}: {_shown(row)}")
    p90 = [row["moving_p90_cm"] for row in rows]
    if sum(p <= 5.0 for p in p90) < 12 or max(p90) > 6.0:
        misses.append(f"moving p90 within 5 cm in fewer than 12 of 16 rows or over 6 cm: {[round(p, 2) for p in p90]}")
    ate = [row["ate_cm"] for row in rows if row["pose"] == "estimated"]
    if sum(a >= 1.0 for a in ate) > 1 or max(ate) >= 2.0:
        misses.append(f"ATE 1 cm or more in more than one row of 8, or 2 cm or more: {[round(a, 2) for a in ate]}")
    assert not misses, "\n".join(misses)
