"""The `finetune` flow: the downstream action expert on a frozen μ0 (or the π0-style baseline, preset pi0-tiny)
-> checkpoints (with resume) -> loss artifacts.

Coarse tasks passing a dataset URI and checkpoint paths, never tensors: one checks the inputs (μ0
checkpoint, demonstrations of the chosen tasks), one runs the training loop (tasks/policy/loop.py).
Losses go to the console as they come and to a Prefect table/markdown artifact at the end.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from rich.console import Console

from tasks.policy.config import FinetuneConfig

console = Console()


class FinetuneReport(BaseModel):
    dataset: str
    mu0_checkpoint: str
    checkpoint: str
    start_step: int
    final_step: int
    seconds: float
    steps_per_s: float
    episodes: int
    samples: int
    log: list[dict]


@task(name="demonstrations", cache_policy=NO_CACHE)
def check_inputs(dataset: str, config: FinetuneConfig) -> tuple[str, int]:
    """(resolved μ0 checkpoint, "" for the π0 baseline; demonstrations selected): fails early, before any model is built."""
    from tasks.policy.demos import select_demonstrations
    from tasks.policy.load import resolve_mu0
    from tasks.policy.loop import uses_mu0

    mu0 = str(resolve_mu0(config.mu0_checkpoint)) if uses_mu0(config.preset) else ""
    return mu0, len(select_demonstrations(dataset, config.tasks, config.demos_per_task))


@task(name="finetune", cache_policy=NO_CACHE)
def train_task(dataset: str, config: FinetuneConfig, mu0: str, episodes: int) -> FinetuneReport:
    from tasks.policy.loop import train_policy

    def show(rec: dict) -> None:
        parts = " ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "step")
        console.print(f"[bold]step {rec['step']}[/bold] {parts}")

    res = train_policy(dataset, config, on_log=show)
    return FinetuneReport(dataset=dataset, mu0_checkpoint=mu0, checkpoint=res.checkpoint, start_step=res.start_step,
                          final_step=res.final_step, seconds=res.seconds, steps_per_s=res.steps_per_s, episodes=episodes,
                          samples=res.samples, log=res.log)


def loss_markdown(report: FinetuneReport, config: FinetuneConfig) -> str:
    lines = [f"# finetune {report.dataset}", "",
             f"{config.preset}{'' if config.use_traces else ' (no traces)'} on `{report.mu0_checkpoint or 'no μ0'}`; "
             f"{report.episodes} demonstrations, {report.samples} steps of data; optimiser steps {report.start_step} -> "
             f"{report.final_step} in {report.seconds:.1f} s ({report.steps_per_s:.3g} steps/s); checkpoint `{report.checkpoint}`",
             "", "| step | loss | gate | lr |", "|---|---|---|---|"]
    for r in report.log:
        lines.append(f"| {r['step']} | {r['loss']:.4f} | {r.get('gate', float('nan')):.3f} | {r['lr']:.2e} |")
    return "\n".join(lines)


@flow(name="finetune", log_prints=True)
def finetune(dataset: str, config: FinetuneConfig = FinetuneConfig()) -> FinetuneReport:
    """Train the action expert on DATASET's demonstrations with μ0 frozen; checkpoints under config.out_dir, resumed."""
    mu0, episodes = check_inputs(dataset, config)
    get_run_logger().info("μ0 %s; %d demonstrations; preset %s, traces %s", mu0, episodes, config.preset, config.use_traces)
    report = train_task(dataset, config, mu0, episodes)
    if report.log:
        create_table_artifact(key="finetune-losses", table=report.log, description=f"losses per logging step, {dataset}")
    create_markdown_artifact(key="finetune-summary", markdown=loss_markdown(report, config), description="finetune run")
    return report
