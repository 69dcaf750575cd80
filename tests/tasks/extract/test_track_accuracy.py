"""Tracks graded in centimetres against Meta-World ground truth (static camera, given depth and cameras)."""

from __future__ import annotations

import pytest

from tasks.config import get_preset
from tasks.run.discover import discover
from tasks.sim.score import grade_episode


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    """One static-camera episode of each of the five tasks, full length (54-97 frames)."""
    from tasks.sim.generate import generate_corpus

    corpus = tmp_path_factory.mktemp("accuracy")
    generate_corpus(corpus, 5, ["pick-place", "drawer-open", "button-press", "push", "reach"], max_steps=120, seed=0)
    cfg = get_preset("sim")
    out = {}
    for src in discover(str(corpus), cfg):
        _, out[src.uri.rsplit("/", 1)[-1]] = grade_episode(src, cfg)
    return out


def test_moving_tracks_are_accurate_and_cover_visible_pairs(scores):
    for name, s in scores.items():
        assert s.n_moving >= 10, (name, s)
        assert s.moving_median_cm <= 1.5, (name, s)
        assert s.moving_p90_cm <= 5.0, (name, s)
        assert s.moving_coverage >= 0.6, (name, s)


def test_static_tracks_do_not_drift(scores):
    for name, s in scores.items():
        assert s.static_drift_median_cm < 0.5, (name, s)
