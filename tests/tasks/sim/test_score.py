"""Where the grader says a track's missed moving pairs fall: after its last sighting, before its first, in between."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.sim.score import _missed_moving


def test_missed_moving_pairs_are_split_by_where_they_fall_in_their_track():
    # track 0 (arm): seen 2-4, truly visible 0-7 -> 2 before, 3 after; track 1 (lid): seen 0, 3, truly 0-3 -> 2 between
    pred = np.zeros((3, 8), bool)
    pred[0, 2:5] = True
    pred[1, [0, 3]] = True
    truly = np.zeros((3, 8), bool)
    truly[0, :] = True
    truly[1, :4] = True
    body = np.array([1, 2, -1])  # track 2 is on no body: never counted
    out = _missed_moving(pred, truly, body, np.array(["table", "arm", "lid"]))
    n = truly.sum()  # 12 truly visible moving pairs, 5 covered
    assert out == {"moving_missed_after": 3 / n, "moving_missed_before": 2 / n, "moving_missed_between": 2 / n,
                   "moving_missed_body": "arm"}
    covered = (pred & truly).sum() / n
    assert covered + sum(v for k, v in out.items() if k != "moving_missed_body") == pytest.approx(1.0)


def test_nothing_missed_names_no_body():
    pred = truly = np.ones((2, 5), bool)
    out = _missed_moving(pred, truly, np.array([0, 0]), np.array(["arm"]))
    assert out["moving_missed_body"] == "" and out["moving_missed_after"] == out["moving_missed_before"] == 0.0
