"""Success rates with 95% Wilson intervals, per task: 20 episodes pin a rate only to about +-15 points,
and the interval says so (the Wilson interval stays inside [0, 1] and is sensible at 0/n and n/n)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel
from scipy.stats import binomtest

ALL = "all"  # the pooled row over every task


class TaskRate(BaseModel):
    task: str
    episodes: int
    successes: int
    rate: float
    ci_low: float
    ci_high: float
    mean_steps_success: float | None  # env steps to success, averaged over the successful episodes


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """scipy's Wilson score interval for successes out of n (n >= 1)."""
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _rate(task: str, rows: list[dict]) -> TaskRate:
    wins = [r for r in rows if r["success"]]
    low, high = wilson_interval(len(wins), len(rows))
    return TaskRate(
        task=task, episodes=len(rows), successes=len(wins), rate=len(wins) / len(rows), ci_low=low, ci_high=high,
        mean_steps_success=sum(r["steps"] for r in wins) / len(wins) if wins else None,
    )


def summarize(rows: Iterable[dict]) -> list[TaskRate]:
    """One TaskRate per task in first-seen order, then the pooled ALL row when there is more than one task."""
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    out = [_rate(task, rs) for task, rs in by_task.items()]
    if len(out) > 1:
        out.append(_rate(ALL, [r for rs in by_task.values() for r in rs]))
    return out


def rate_cells(rate: TaskRate) -> dict[str, str]:
    """One row as people read it (the CLI table and the Prefect artifact show the same cells)."""
    return {
        "task": rate.task, "episodes": str(rate.episodes), "successes": str(rate.successes), "rate": f"{rate.rate:.1%}",
        "95% interval": f"{100 * rate.ci_low:.1f}–{rate.ci_high:.1%}",
        "steps to success": "-" if rate.mean_steps_success is None else f"{rate.mean_steps_success:.0f}",
    }
