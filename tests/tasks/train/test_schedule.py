"""The learning-rate schedule is a function of the step alone (so a resumed run continues it exactly)."""

from __future__ import annotations

import math

import pytest

from tasks.train.config import PretrainConfig
from tasks.train.loop import lr_at


def test_constant_is_the_published_recipe():
    cfg = PretrainConfig(lr=3e-4, steps=100)
    assert {lr_at(s, cfg) for s in (0, 50, 99)} == {3e-4}


def test_cosine_warms_up_linearly_then_decays_to_the_floor():
    cfg = PretrainConfig(lr=1e-3, steps=1100, lr_schedule="cosine", warmup_steps=100, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(49, cfg) == pytest.approx(5e-4)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(600, cfg) == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(1100, cfg) == pytest.approx(1e-4)
    values = [lr_at(s, cfg) for s in range(100, 1101)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone after warm-up
