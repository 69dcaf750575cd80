"""Action chunks, normalisation statistics and the finetune learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.policy.config import FinetuneConfig
from tasks.policy.demos import action_chunk
from tasks.policy.loop import lr_at
from tasks.policy.normalize import NormStats


def test_chunks_past_the_end_repeat_the_last_action_and_are_masked():
    actions = np.arange(20, dtype=np.float32).reshape(10, 2)
    chunk, mask = action_chunk(actions, 0, 4)
    assert np.array_equal(chunk, actions[:4]) and mask.all()
    chunk, mask = action_chunk(actions, 7, 5)
    assert np.array_equal(chunk[:3], actions[7:]) and np.array_equal(chunk[3:], actions[[9, 9]])
    assert mask.tolist() == [True, True, True, False, False]


def test_norm_stats_round_trip_through_the_checkpoint_json(tmp_path):
    rng = np.random.default_rng(0)
    states = rng.normal(3.0, 2.0, (500, 5)).astype(np.float32)
    states[:, 4] = 0.25  # a slot that never moves keeps std 1
    actions = rng.uniform(-1, 1, (500, 4)).astype(np.float32)
    stats = NormStats.of(states, actions)
    assert stats.state_std[4] == 1.0 and stats.state_mean[4] == pytest.approx(0.25)
    stats.save(tmp_path)
    back = NormStats.load(tmp_path)
    assert back == stats
    z = back.norm_state(states)
    assert np.allclose(z[:, :4].mean(0), 0, atol=1e-5) and np.allclose(z[:, :4].std(0), 1, atol=1e-4)
    assert np.allclose(back.unnorm_action(back.norm_action(actions)), actions, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="norm_stats.json"):
        NormStats.load(tmp_path / "nowhere")


def test_lr_warms_up_then_follows_a_cosine_to_zero():
    cfg = FinetuneConfig(steps=100, lr=1e-4, warmup_steps=1000)  # warm-up capped at 10% of the run
    assert lr_at(0, cfg) == pytest.approx(1e-5) and lr_at(9, cfg) == pytest.approx(1e-4)
    assert lr_at(10, cfg) == pytest.approx(1e-4) and lr_at(55, cfg) == pytest.approx(5e-5)
    assert lr_at(100, cfg) == pytest.approx(0.0, abs=1e-12)
    assert FinetuneConfig(tasks="reach, push").tasks == ["reach", "push"]
    assert (FinetuneConfig().weight_decay, FinetuneConfig().grad_clip) == (0.01, 1.0)


def test_policy_overrides_are_checked_against_the_preset():
    assert FinetuneConfig(policy={"grid": 16, "depth": 2}).policy == {"grid": 16, "depth": 2}
    with pytest.raises(ValueError, match="unknown policy setting 'gridd' for preset 'policy-tiny'; its settings: .*grid"):
        FinetuneConfig(policy={"gridd": 16})
    with pytest.raises(ValueError, match="grid must be even"):
        FinetuneConfig(policy={"grid": 5})
    with pytest.raises(ValueError, match="'seed' is not set here: it is --seed"):
        FinetuneConfig(policy={"seed": 3})
    with pytest.raises(ValueError, match="unknown policy setting 'grid' for preset 'pi0-tiny'"):
        FinetuneConfig(preset="pi0-tiny", policy={"grid": 16})  # the π0 baseline has no keypoint grid
