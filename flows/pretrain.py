"""The `pretrain` flow: dataset statistics -> training loop (with resume) -> loss artifact.

Coarse tasks passing a dataset URI and a checkpoint path, never tensors. Losses go to the console
(rich) as they come and to a Prefect table/markdown artifact at the end.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from rich.console import Console

from tasks.train.config import PretrainConfig
from tasks.train.stats import TraceStats, ensure_trace_stats

console = Console()


class PretrainReport(BaseModel):
    dataset: str
    checkpoint: str
    start_step: int
    final_step: int
    seconds: float
    steps_per_s: float
    log: list[dict]
    curve: list[dict] = []
    best_checkpoint: str = ""


@task(name="trace-stats", cache_policy=NO_CACHE)
def trace_stats(dataset: str, horizon: int) -> TraceStats:
    """delta_scale and depth range, stored beside the dataset (recomputed when the dataset moved on)."""
    return ensure_trace_stats(dataset, horizon=horizon)


@task(name="train", cache_policy=NO_CACHE)
def train_task(dataset: str, config: PretrainConfig, stats: TraceStats) -> PretrainReport:
    from tasks.train.loop import train

    def show(rec: dict) -> None:
        parts = " ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "step")
        console.print(f"[bold]step {rec['step']}[/bold] {parts}")

    res = train(dataset, config, stats, on_log=show)
    return PretrainReport(dataset=dataset, checkpoint=res.checkpoint, start_step=res.start_step, final_step=res.final_step,
                          seconds=res.seconds, steps_per_s=res.steps_per_s, log=res.log, curve=res.curve,
                          best_checkpoint=res.best_checkpoint)


def loss_markdown(report: PretrainReport) -> str:
    lines = [f"# pretrain {report.dataset}", "",
             f"steps {report.start_step} -> {report.final_step} in {report.seconds:.1f} s ({report.steps_per_s:.3g} steps/s); "
             f"checkpoint `{report.checkpoint}`, best by held-out loss `{report.best_checkpoint or '-'}`", "", "| step | loss | flow | done | rigid |", "|---|---|---|---|---|"]
    for r in report.log:
        lines.append("| " + " | ".join([str(r["step"])] + [f"{r.get(k, float('nan')):.4f}" for k in ("loss", "flow", "done", "rigid")]) + " |")
    return "\n".join(lines)


@flow(name="pretrain", log_prints=True)
def pretrain(dataset: str, config: PretrainConfig = PretrainConfig()) -> PretrainReport:
    """Pretrain μ0 on the Lance trace DATASET; checkpoints under config.out_dir, resumed when present."""
    log = get_run_logger()
    stats = trace_stats(dataset, config.model.horizon)
    log.info("delta_scale %s, depth p1/p99 %.3f/%.3f m", stats.delta_scale, stats.depth_p1, stats.depth_p99)
    report = train_task(dataset, config, stats)
    if report.log:
        create_table_artifact(key="pretrain-losses", table=report.log, description=f"losses per logging step, {dataset}")
    if report.curve:
        create_table_artifact(key="pretrain-held-out", table=report.curve,
                              description=f"held-out loss and uvz ADE/FDE per checkpoint; best {report.best_checkpoint}")
    create_markdown_artifact(key="pretrain-summary", markdown=loss_markdown(report), description="pretrain run")
    return report
