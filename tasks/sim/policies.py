"""Policies the harness can run, and how a `PolicySpec` becomes one on whichever process runs the episodes.

POLICY_BUILDERS maps a spec's kind to "module:function" (imported only when that kind is built, so
the scripted path never imports torch); the function takes the `PolicySpec` and returns a `Policy`.
`"checkpoint"` is a policy trained by `mu0 finetune` (tasks/policy/rollout_policy.py).
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable

import numpy as np

from tasks.sim.policy import ACTION_DIM, Observation, Policy
from tasks.sim.rollout_config import PolicySpec

POLICY_BUILDERS: dict[str, str] = {
    "scripted": "tasks.sim.policies:scripted_policy",
    "checkpoint": "tasks.policy.rollout_policy:build",
}

PolicyFactory = Callable[[], Policy]


class PolicyUnavailableError(RuntimeError):
    """The spec names a kind of policy that no builder is registered for (yet)."""


class ScriptedPolicy:
    """Meta-World's scripted expert for the current task (metaworld.policies.ENV_POLICY_MAP), one action per chunk."""

    execute_horizon = 1
    needs_image = False

    def __init__(self) -> None:
        self._expert = None

    def reset(self, task: str, instruction: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        self._expert = ENV_POLICY_MAP[f"{task}-v3"]()

    def act(self, observation: Observation) -> np.ndarray:
        if self._expert is None:
            raise RuntimeError("ScriptedPolicy.act before reset(task, instruction)")
        with warnings.catch_warnings():  # the experts warn about their own gains on every call
            warnings.filterwarnings("ignore", message="Constant", category=UserWarning)
            action = self._expert.get_action(observation.state.astype(np.float64))
        return np.asarray(action, dtype=np.float32).reshape(1, ACTION_DIM)


class ReplayPolicy:
    """Plays back recorded actions as one chunk: re-renders an episode without its policy (deterministic physics)."""

    needs_image = False

    def __init__(self, actions: np.ndarray) -> None:
        self.actions = np.asarray(actions, dtype=np.float32).reshape(-1, ACTION_DIM)
        self.execute_horizon = max(1, len(self.actions))

    def reset(self, task: str, instruction: str) -> None:
        pass

    def act(self, observation: Observation) -> np.ndarray:
        rest = self.actions[observation.step:]
        return rest if len(rest) else np.zeros((1, ACTION_DIM), np.float32)


def scripted_policy(spec: PolicySpec) -> ScriptedPolicy:
    return ScriptedPolicy()


def make_policy(spec: PolicySpec) -> Policy:
    """Build the policy a spec names (on the process that will run it), with the spec's execute_horizon if set."""
    target = POLICY_BUILDERS.get(spec.kind)
    if target is None:
        raise PolicyUnavailableError(
            f"no {spec.kind!r} policy is available yet (registered: {', '.join(sorted(POLICY_BUILDERS))}); "
            f"a builder is plugged in by adding {spec.kind!r}: 'module:function' to "
            "tasks.sim.policies.POLICY_BUILDERS"
        )
    module, _, name = target.partition(":")
    policy = getattr(importlib.import_module(module), name)(spec)
    if spec.execute_horizon is not None:
        policy.execute_horizon = spec.execute_horizon
    return policy


def as_factory(policy: PolicySpec | PolicyFactory) -> PolicyFactory:
    """A zero-argument callable that builds the policy: a spec becomes `make_policy(spec)` (picklable for Ray).

    A spec whose kind has no builder is refused here, in the caller's process, not on every worker.
    """
    if isinstance(policy, PolicySpec):
        if policy.kind not in POLICY_BUILDERS:
            make_policy(policy)  # raises PolicyUnavailableError with the explanation
        return functools.partial(make_policy, policy)
    if not callable(policy):
        raise TypeError(f"expected a PolicySpec or a zero-argument callable returning a Policy, got {type(policy).__name__}")
    return policy
