"""Coverage on a Meta-World task the tracker was not tuned on (static camera, given depth and cameras).

sweep seed 5 was rejected at 0.57 < 0.60 while its tracks were good: the table around the moving arm
held no tracks, because every flat point within 10 cm of a moving textured one was dropped.
"""

from __future__ import annotations

import pytest

from tasks.config import get_preset, with_overrides
from tasks.extract.motion_filter import track_coverage
from tasks.run.discover import discover
from tasks.sim.score import grade_episode


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from tasks.sim.generate import generate_corpus

    corpus = tmp_path_factory.mktemp("sweep")
    generate_corpus(corpus, 1, ["sweep"], max_steps=120, seed=5)
    [src] = discover(str(corpus), get_preset("sim"))
    return src


def graded(src, **track):
    cfg = with_overrides(get_preset("sim"), {"depth.backend": "given", "pose.backend": "given", "track": track})
    ep, score = grade_episode(src, cfg)
    return track_coverage(ep.tracks_uv, ep.visible, *ep.image_size, cfg.filter.coverage_grid), score


def test_flat_table_around_the_arm_is_covered_by_correct_tracks(sweep):
    cov, s = graded(sweep)
    assert cov >= 0.6, (cov, s)  # METHOD.md's rule, unchanged
    assert s.moving_median_cm <= 1.5 and s.moving_p90_cm <= 5.0 and s.static_drift_median_cm < 0.5, s
    old_cov, _ = graded(sweep, flat_radius_m=0.1)
    assert old_cov < 0.6 < cov, (old_cov, cov)  # the cause: the radius that emptied the table
