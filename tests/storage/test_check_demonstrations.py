"""`mu0 check` on the demonstrations table: steps 0..S-1 once each, one state/action length, frames inside."""

from __future__ import annotations

import pyarrow as pa

from storage.check import check_demonstration_steps


def steps(rows: list[tuple]) -> pa.Table:
    """(episode_id, frame_index, frame or None, state_len, action_len) rows."""
    names = ["episode_id", "frame_index", "frame", "state_len", "action_len"]
    types = [pa.string(), pa.int32(), pa.int32(), pa.int32(), pa.int32()]
    return pa.table({n: pa.array([r[i] for r in rows], t) for i, (n, t) in enumerate(zip(names, types))})


GOOD = [("a", 1, None, 39, 4), ("a", 0, 0, 39, 4), ("a", 2, 1, 39, 4), ("b", 0, 0, 8, 7)]


def test_a_whole_demonstration_passes_in_any_row_order():
    f = check_demonstration_steps(steps(GOOD), {"a": 2, "b": 1})
    assert f.ok and f.checked == 2


def test_steps_stored_twice_are_found():
    f = check_demonstration_steps(steps(GOOD + [("a", 1, None, 39, 4)]), {"a": 2, "b": 1})
    assert f.failed == 1 and f.examples == ["a: 4 rows for steps 0..2 (3 distinct)"]


def test_lengths_that_vary_and_frames_outside_the_episode_are_found():
    f = check_demonstration_steps(steps(GOOD[:3] + [("b", 0, 0, 8, 6), ("b", 1, 0, 8, 7)]), {"a": 2, "b": 1})
    assert f.failed == 1 and "b: state or action lengths differ" in f.examples[0]
    f = check_demonstration_steps(steps(GOOD), {"a": 1, "b": 1})
    assert f.failed == 1 and f.examples[0].startswith("a: stored frames 0..1 for n_frames 1")
