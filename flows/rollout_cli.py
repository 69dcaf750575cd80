"""`mu0 rollout`: a policy in closed loop on Meta-World, as a success table (registered in flows/cli.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()


def rates_table(summary) -> Table:
    from tasks.sim.success_rate import rate_cells

    cells = [rate_cells(r) for r in summary.rates]
    table = Table(title=escape(f"rollout: {summary.policy}"))
    for name in cells[0]:
        table.add_column(name, justify="left" if name == "task" else "right", no_wrap=name != "steps to success")
    for c in cells:
        table.add_row(*(escape(v) for v in c.values()))
    return table


def rollout_cli(
    task: str = typer.Option(..., "--task", help="Meta-World tasks, comma-separated (reach,button-press), or a named set: "
                             "bench, pretrain, held-out, all"),
    episodes: int = typer.Option(20, min=1, help="episodes per task"),
    out: Path = typer.Option(..., help="directory for rollouts.json, summary.json and videos/"),
    policy: str = typer.Option("scripted", help="scripted (Meta-World's expert); ignored with --checkpoint"),
    checkpoint: Optional[Path] = typer.Option(None, help="evaluate a trained policy from this checkpoint directory"),
    seed: int = typer.Option(100_000, min=0, help="episode i of a task uses seed + i; demonstration corpora use 0, 1, ..."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="env steps per episode at most (default: the env's 500)"),
    execute_horizon: Optional[int] = typer.Option(None, min=1, help="actions of each chunk executed before re-querying"),
    videos: int = typer.Option(2, min=0, help="MP4s per task: up to this many successes and this many failures"),
    runner: str = typer.Option("ray", help="ray | sequential (in this process)"),
    ray_address: Optional[str] = typer.Option(None, help="existing Ray cluster ('auto' inside one); default: local Ray"),
    num_cpus: Optional[int] = typer.Option(None, min=1, help="CPUs for the local Ray"),
):
    """Run a policy in closed loop on seeded Meta-World tasks; print per-task success with 95% Wilson intervals."""
    from pydantic import ValidationError

    from flows.rollout import rollout
    from tasks.sim.policies import PolicyUnavailableError, as_factory
    from tasks.sim.rollout_config import PolicySpec, RolloutConfig

    if runner not in ("ray", "sequential"):
        raise typer.BadParameter("must be 'ray' or 'sequential'", param_hint="--runner")
    if checkpoint is None and policy != "scripted":
        raise typer.BadParameter(f"unknown policy {policy!r}: 'scripted', or pass --checkpoint DIR", param_hint="--policy")
    try:
        spec = PolicySpec(kind="checkpoint" if checkpoint else "scripted", checkpoint=str(checkpoint) if checkpoint else None,
                          execute_horizon=execute_horizon)
        as_factory(spec)  # an unavailable kind is refused before Prefect or Ray start
        if checkpoint is not None:
            from tasks.policy.load import check_policy_checkpoint

            check_policy_checkpoint(checkpoint)  # so is a directory that is not a `mu0 finetune` checkpoint
        cfg = RolloutConfig(policy=spec, tasks=task, episodes=episodes, seed=seed, max_steps=max_steps, videos=videos)
    except (PolicyUnavailableError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(e["msg"] for e in exc.errors()),
                                 param_hint="--task" if "tasks" in str(exc) else None) from None
    t0 = time.perf_counter()
    summary = rollout(str(out), cfg, runner=runner, ray_address=ray_address, num_cpus=num_cpus, show_progress=True)
    console.print(rates_table(summary))
    console.print(f"wall time {time.perf_counter() - t0:.1f} s (episodes {summary.episodes_s:.1f} s, "
                  f"set-up {summary.setup_s:.1f} s, videos {summary.videos_s:.1f} s); "
                  f"{escape(str(out / 'rollouts.json'))}, {len(summary.videos)} videos in {escape(str(out / 'videos'))}",
                  soft_wrap=True)
