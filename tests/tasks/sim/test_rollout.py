"""Closed-loop harness: chunk execution, the scripted expert's known success, Wilson intervals, outputs, videos."""

from __future__ import annotations

import json
import math
import pickle
import warnings

import av
import numpy as np
import pytest
from pydantic import ValidationError

from tasks.sim.policies import PolicyUnavailableError, ScriptedPolicy, as_factory
from tasks.sim.policy import Observation, Policy
from tasks.sim.rollout import rollout_episode
from tasks.sim.rollout_config import ROLLOUT_SEED, PolicySpec, RolloutConfig
from tasks.sim.rollout_runner import run_rollouts
from tasks.sim.success_rate import summarize, wilson_interval


class ChunkPolicy:
    """Returns chunks of `k` actions that encode (call, position) in the gripper channel; records what it saw."""

    def __init__(self, k: int, horizon: int, needs_image: bool = False):
        self.k, self.execute_horizon, self.needs_image = k, horizon, needs_image
        self.seen: list[Observation] = []

    def reset(self, task: str, instruction: str) -> None:
        self.seen = []

    def act(self, observation: Observation) -> np.ndarray:
        call = len(self.seen)
        self.seen.append(observation)
        chunk = np.zeros((self.k, 4), np.float32)
        chunk[:, 3] = [call * 0.1 + j * 0.01 for j in range(self.k)]
        return chunk


@pytest.mark.parametrize("k, horizon, calls", [(5, 3, 4), (2, 3, 5)])
def test_chunks_run_for_min_of_length_and_execute_horizon(k, horizon, calls):
    policy = ChunkPolicy(k, horizon, needs_image=k == 5)
    assert isinstance(policy, Policy)
    res = rollout_episode(policy, "reach", ROLLOUT_SEED, max_steps=10)
    n = min(k, horizon)
    assert (res.steps, len(policy.seen), res.success) == (10, calls, False)
    assert [o.step for o in policy.seen] == [n * c for c in range(calls)]
    expected = [c * 0.1 + j * 0.01 for c in range(calls) for j in range(n)][:10]
    np.testing.assert_allclose(res.actions[:, 3], expected, atol=1e-6)
    first = policy.seen[0]
    assert first.state.shape == (39,) and first.state.dtype == np.float32
    assert first.instruction == "reach the goal position with the gripper"
    if policy.needs_image:
        assert first.image.shape == (240, 320, 3) and first.image.dtype == np.uint8 and first.image.std() > 10
    else:
        assert first.image is None


def test_bad_chunks_are_refused():
    class Wrong(ChunkPolicy):
        def act(self, observation):
            return np.zeros((2, 3), np.float32)

    with pytest.raises(ValueError, match=r"\(k, 4\)"):
        rollout_episode(Wrong(2, 2), "reach", ROLLOUT_SEED, max_steps=3)


def test_scripted_expert_reaches_its_known_success_and_rollouts_json(tmp_path):
    out = tmp_path / "run"
    summary = run_rollouts(PolicySpec(), ["reach", "button-press"], 10, ROLLOUT_SEED, out, runner="sequential", videos=0)
    rates = {r.task: r for r in summary.rates}
    for task in ("reach", "button-press"):
        assert rates[task].episodes == 10 and rates[task].rate >= 0.9, rates[task]
    rows = json.loads((out / "rollouts.json").read_text())
    assert [(r["task"], r["seed"]) for r in rows] == [(t, ROLLOUT_SEED + i) for t in ("reach", "button-press") for i in range(10)]
    assert all(set(r) == {"task", "seed", "success", "steps"} for r in rows)
    assert all(0 < r["steps"] <= 500 and (r["steps"] < 500 or not r["success"]) for r in rows)
    assert rates["all"].successes == sum(r["success"] for r in rows)
    stored = json.loads((out / "summary.json").read_text())
    assert stored["rates"][0]["task"] == "reach" and stored["videos"] == [] and stored["seed"] == ROLLOUT_SEED


def test_wilson_interval_matches_the_closed_form():
    z = 1.959963984540054
    for k, n in ((9, 10), (0, 20), (20, 20), (13, 20)):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert wilson_interval(9, 10) == pytest.approx((0.5958, 0.9821), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    rates = summarize([{"task": "a", "success": s, "steps": 7} for s in (True, True, False)]
                      + [{"task": "b", "success": False, "steps": 500}])
    assert [(r.task, r.successes, r.episodes) for r in rates] == [("a", 2, 3), ("b", 0, 1), ("all", 2, 4)]
    assert rates[0].mean_steps_success == 7 and rates[1].mean_steps_success is None


def test_videos_replay_successes_and_failures(tmp_path):
    # The expert needs 57, 44, 40, 62 steps on reach seeds 100000-100003: at 50 steps two fail, two succeed.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_rollouts(ScriptedPolicy, ["reach"], 4, ROLLOUT_SEED, tmp_path, runner="sequential", videos=1,
                               max_steps=50)
    rows = json.loads((tmp_path / "rollouts.json").read_text())
    assert [r["success"] for r in rows] == [False, True, True, False]
    names = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert names == ["reach-100000-failure.mp4", "reach-100001-success.mp4"]
    assert not [w for w in caught if "ends differently" in str(w.message)]
    with av.open(str(tmp_path / "videos" / "reach-100001-success.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == rows[1]["steps"] + 1 and frames[0].shape == (240, 320, 3)
    assert summary.policy == "ScriptedPolicy"


def test_policy_specs_travel_and_unknown_kinds_are_refused(monkeypatch):
    import tasks.sim.policies as policies

    factory = pickle.loads(pickle.dumps(as_factory(PolicySpec(execute_horizon=2))))
    policy = factory()
    assert isinstance(policy, ScriptedPolicy) and policy.execute_horizon == 2
    monkeypatch.delitem(policies.POLICY_BUILDERS, "checkpoint")  # a kind nobody registered a builder for
    with pytest.raises(PolicyUnavailableError, match="POLICY_BUILDERS"):
        as_factory(PolicySpec(kind="checkpoint", checkpoint="runs/x/step-000100"))
    with pytest.raises(ValidationError, match="needs checkpoint"):
        PolicySpec(kind="checkpoint")
    with pytest.raises(ValidationError, match="unknown Meta-World task"):
        RolloutConfig(tasks="reach,rech")
    assert RolloutConfig(tasks="reach,reach-v3").tasks == ["reach"]


@pytest.mark.slow
def test_ray_runner_matches_sequential(local_ray, tmp_path):
    seq = run_rollouts(PolicySpec(), ["reach", "drawer-open"], 3, ROLLOUT_SEED, tmp_path / "seq", runner="sequential", videos=0)
    ray_ = run_rollouts(PolicySpec(), ["reach", "drawer-open"], 3, ROLLOUT_SEED, tmp_path / "ray", runner="ray", videos=1)
    assert (tmp_path / "seq" / "rollouts.json").read_text() == (tmp_path / "ray" / "rollouts.json").read_text()
    assert [r.model_dump() for r in seq.rates] == [r.model_dump() for r in ray_.rates]
    assert sorted(p.name for p in (tmp_path / "ray" / "videos").iterdir()) == [
        "drawer-open-100000-success.mp4", "reach-100000-success.mp4"]
