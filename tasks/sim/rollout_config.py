"""What a closed-loop evaluation runs: which policy (`PolicySpec`) on which tasks and seeds (`RolloutConfig`).

Both are frozen pydantic models so they render as the `rollout` flow's form in the Prefect UI and
travel to Ray workers as plain data (a worker builds its own policy from the spec).

Seeds: episode i of task T runs the task instance drawn from seed `seed + i`. Demonstration corpora
(`mu0 sim`, `generate_corpus`) use seeds 0, 1, 2, ...; rollouts must use seeds never used for
demonstrations, hence the default ROLLOUT_SEED, far above any corpus made here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ROLLOUT_SEED = 100_000
DEFAULT_TASKS = ("reach", "button-press", "drawer-open", "pick-place")


class PolicySpec(BaseModel):
    """A policy by kind; `tasks.sim.policies.POLICY_BUILDERS` maps each kind to the function that builds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["scripted", "checkpoint"] = Field(
        "scripted", description="scripted: Meta-World's expert for the task; checkpoint: a trained policy"
    )
    checkpoint: str | None = Field(None, description="checkpoint directory (kind=checkpoint only)")
    execute_horizon: int | None = Field(
        None, ge=1, description="actions of each predicted chunk executed before the policy is asked again; "
        "None: the policy's own"
    )

    @model_validator(mode="after")
    def _checkpoint_iff_kind(self) -> PolicySpec:
        if self.kind == "checkpoint" and not self.checkpoint:
            raise ValueError("kind='checkpoint' needs checkpoint=<directory>")
        if self.kind != "checkpoint" and self.checkpoint:
            raise ValueError(f"kind={self.kind!r} takes no checkpoint (got {self.checkpoint!r})")
        return self

    def label(self) -> str:
        return self.kind if self.checkpoint is None else f"{self.kind}:{self.checkpoint}"


class RolloutConfig(BaseModel):
    """Closed-loop evaluation on Meta-World: `episodes` seeded instances of every task, success as Meta-World scores it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: PolicySpec = Field(PolicySpec(), description="the policy to evaluate")
    tasks: list[str] = Field(
        list(DEFAULT_TASKS), min_length=1,
        description="Meta-World tasks (names without -v3), or one named set: bench, pretrain, held-out, all",
    )
    episodes: int = Field(20, ge=1, description="episodes per task")
    seed: int = Field(
        ROLLOUT_SEED, ge=0, description="episode i of a task uses seed + i; keep clear of demonstration seeds (0, 1, ...)"
    )
    max_steps: int | None = Field(None, ge=1, description="env steps per episode at most; None: the env's max_path_length (500)")
    videos: int = Field(2, ge=0, description="MP4s kept per task: up to this many successes and this many failures")

    @field_validator("tasks", mode="before")
    @classmethod
    def _known_tasks(cls, value: Any) -> Any:
        """A comma-separated string or a list; named sets expand; unknown names are refused with the known ones."""
        from tasks.sim.generate import task_names

        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        return list(dict.fromkeys(task_names(value))) if isinstance(value, str) else value
