"""The `rollout` flow: closed-loop episodes of a policy on Meta-World -> per-task success rates -> artifacts.

One coarse task hands the episodes to Ray (tasks.sim.rollout_runner); Prefect sees the summary
(rates, paths, timings), never frames. The success table is published as a table artifact and,
with the timings and video paths, as a markdown artifact.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tasks.sim.rollout_config import RolloutConfig
from tasks.sim.rollout_runner import RolloutSummary, run_rollouts
from tasks.sim.success_rate import rate_cells


@task(name="rollouts", cache_policy=NO_CACHE)
def rollouts(out: str, config: RolloutConfig, runner: str, ray_address: str | None, num_cpus: int | None,
             show_progress: bool) -> RolloutSummary:
    """Every episode of the config, on Ray or in this process; a progress bar on the terminal when asked."""
    total = len(config.tasks) * config.episodes
    with Progress(TextColumn("[bold]rollout"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                  TimeElapsedColumn(), disable=not show_progress) as bar:
        job, wins = bar.add_task("rollout", total=total, note=""), {"n": 0}

        def on_result(res) -> None:
            wins["n"] += res.success
            bar.update(job, advance=1, note=f"{wins['n']} successes")

        return run_rollouts(config.policy, config.tasks, config.episodes, config.seed, out, ray_address=ray_address,
                            num_cpus=num_cpus, videos=config.videos, runner=runner, max_steps=config.max_steps,
                            on_result=on_result)


def summary_markdown(summary: RolloutSummary) -> str:
    cells = [rate_cells(r) for r in summary.rates]
    head = list(cells[0])
    lines = [f"# rollout: {summary.policy}", "",
             f"{summary.episodes} episodes per task, seeds {summary.seed}..{summary.seed + summary.episodes - 1}; "
             f"episodes {summary.episodes_s:.1f} s, set-up {summary.setup_s:.1f} s, videos {summary.videos_s:.1f} s; "
             f"`{summary.out_dir}/rollouts.json`", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.values()) + " |" for c in cells]
    if summary.videos:
        lines += ["", "**Videos**", ""] + [f"- `{v}`" for v in summary.videos]
    return "\n".join(lines)


@flow(name="rollout", log_prints=True)
def rollout(
    out: str = "runs/rollout",
    config: RolloutConfig = RolloutConfig(),
    runner: Literal["ray", "sequential"] = "ray",
    ray_address: str | None = None,
    num_cpus: int | None = None,
    show_progress: bool = False,
) -> RolloutSummary:
    """Evaluate config.policy in closed loop on Meta-World; rollouts.json, summary.json and videos go to OUT."""
    summary = rollouts(out, config, runner, ray_address, num_cpus, show_progress)
    for r in summary.rates:
        get_run_logger().info("%s: %d/%d (%.1f%%, 95%% CI %.1f-%.1f%%)", r.task, r.successes, r.episodes,
                              100 * r.rate, 100 * r.ci_low, 100 * r.ci_high)
    create_table_artifact(key="rollout-success", table=[rate_cells(r) for r in summary.rates],
                          description=f"success rates of {summary.policy}, 95% Wilson intervals")
    create_markdown_artifact(key="rollout-summary", markdown=summary_markdown(summary), description="rollout run")
    return summary
