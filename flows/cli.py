"""`mu0`: the command line. Each command is a thin wrapper around a flow or a library call."""

from __future__ import annotations

from flows.environment import apply_defaults

apply_defaults()  # before Prefect, Ray, huggingface_hub or MuJoCo are imported

from pathlib import Path  # noqa: E402
from typing import List, Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from flows.config_cli import CONFIG_HELP, SET_HELP, settle  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help="μ0 trace platform: video -> Lance 3D trace datasets.")
console = Console()

ALL_TASKS = "pick-place,drawer-open,button-press,push,reach"
TASK_SETS_HELP = "comma-separated Meta-World tasks, or a named set: bench (5), pretrain (40), held-out (10), all (50)"


def _config(preset: str, config_file: Optional[Path] = None, settings: Optional[List[str]] = None,
            shortcuts: Optional[dict[str, dict[str, object]]] = None):
    """The preset, then the file, then the command's own flags ({"--pose": {"pose.backend": "open3d"}}), then --set."""
    from tasks.config import UnknownPresetError, get_preset

    try:
        cfg = get_preset(preset)
    except UnknownPresetError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--preset") from None
    return settle(cfg, config_file, shortcuts or {}, settings)


@app.command()
def sim(
    out: Path = typer.Option(..., help="directory to write episode directories into"),
    episodes: int = typer.Option(5, min=1, help="number of episodes"),
    tasks: str = typer.Option(ALL_TASKS, help=TASK_SETS_HELP),
    camera: str = typer.Option("static", help="static | orbit (a smoothly moving camera)"),
    seed: int = typer.Option(0, help="first episode seed"),
    max_steps: int = typer.Option(120, min=10, help="env steps per episode at most (1/20 s each; frames: steps x fps/20)"),
    width: int = typer.Option(320, min=32),
    height: int = typer.Option(240, min=32),
    fps: int = typer.Option(
        20, help="source rate of the videos: 20 = one frame per env step; 40, 60, ... interpolate frames between "
        "env steps; 10, 5, ... keep every 20/fps-th step"
    ),
    orbit_deg_s: Optional[float] = typer.Option(
        None, help="--camera orbit: peak azimuth rate in deg/s of the +-20 deg sweep (default 31.4: the 4 s period "
        "orbit of earlier corpora)"
    ),
):
    """Render a Meta-World corpus (input format 2) with ground truth for grading."""
    from rich.progress import Progress

    from tasks.sim.camera import DEFAULT_ORBIT_DEG_S, orbit_period_s
    from tasks.sim.generate import frames_per_step, generate_corpus, task_names

    if camera not in ("static", "orbit"):
        raise typer.BadParameter("must be 'static' or 'orbit'", param_hint="--camera")
    try:
        names = task_names(tasks)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tasks") from None
    try:
        frames_per_step(fps)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fps") from None
    if orbit_deg_s is not None and camera != "orbit":
        raise typer.BadParameter("only moves an orbiting camera: add --camera orbit", param_hint="--orbit-deg-s")
    speed = DEFAULT_ORBIT_DEG_S if orbit_deg_s is None else orbit_deg_s
    try:
        orbit_period_s(speed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--orbit-deg-s") from None
    with Progress(console=console) as bar:
        job = bar.add_task("render", total=episodes)
        paths = generate_corpus(
            out, episodes, names, camera=camera, width=width, height=height, seed=seed, max_steps=max_steps,
            on_episode=lambda i, p: bar.advance(job), fps=fps, orbit_deg_s=speed,
        )
    console.print(f"wrote {len(paths)} episodes to {out}")


@app.command()
def ingest(
    source: str = typer.Argument(
        ..., help="a directory, a glob, a manifest file (.txt/.jsonl), one video, or a LeRobot v3 dataset (holds meta/info.json)"
    ),
    dataset: str = typer.Option("data/traces", help="Lance dataset root (local directory)"),
    preset: str = typer.Option("generic", help="sim | droid | egodex | agibot | generic"),
    corpus: Optional[str] = typer.Option(None, help="corpus label stored with each episode"),
    ray_address: Optional[str] = typer.Option(None, help="existing Ray cluster ('auto' inside one); default: local Ray"),
    num_cpus: Optional[int] = typer.Option(None, min=1, help="CPUs for the local Ray"),
    sequential: bool = typer.Option(False, help="run in this process instead of on Ray (debugging)"),
    depth: Optional[str] = typer.Option(None, help="given | depth-anything (default: the preset's)"),
    depth_model: Optional[str] = typer.Option(None, help="Depth Anything hub id or local directory"),
    pose: Optional[str] = typer.Option(None, help="given | open3d (default: the preset's)"),
    captions: Optional[str] = typer.Option(None, help="template | vlm | off (default: the preset's)"),
    caption_model: Optional[str] = typer.Option(None, help="vision-language model hub id or local directory"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE.yaml", help=CONFIG_HELP),
    settings: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    retries: int = typer.Option(2, min=0, help="Ray: times an episode whose worker died (OOM, crash) is retried"),
    camera: Optional[str] = typer.Option(None, help="LeRobot: the video feature to trace (default: the first one)"),
    episodes: Optional[str] = typer.Option(None, metavar="0,3,7", help="LeRobot: episode_index values (default: all)"),
):
    """Extract 3D traces from SOURCE into the Lance DATASET (new episodes only).

    Settings apply in order: the preset, --config FILE, the flags below, --set KEY=VALUE (e.g. --set decode.target_fps=5);
    `mu0 config show --preset P` prints them all. A LeRobot dataset is read like plain video (add --depth depth-anything
    --pose open3d; --depth given where it has a depth feature); --camera and --episodes are shortcuts for --set lerobot.camera=KEY / lerobot.episodes=[0,3,7].
    """
    try:
        picked = None if episodes is None else [int(e) for e in episodes.split(",") if e.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected episode_index numbers separated by commas (0,3,7), got {episodes!r}",
                                 param_hint="--episodes") from None
    cfg = _config(preset, config, settings, {
        "--corpus": {"corpus": corpus}, "--depth": {"depth.backend": depth}, "--depth-model": {"depth.model": depth_model},
        "--pose": {"pose.backend": pose}, "--captions": {"captions.backend": captions},
        "--caption-model": {"captions.model": caption_model},
        "--camera": {"lerobot.camera": camera}, "--episodes": {"lerobot.episodes": picked},
    })
    report = run_ingest(source, dataset, cfg, ray_address, num_cpus, sequential, retries)
    raise typer.Exit(code=0 if report.success else 1)


def run_ingest(source, dataset, cfg, ray_address=None, num_cpus=None, sequential=False, retries=2):
    """The flow, and what a person needs from it on a terminal; every user or error text is escaped for rich."""
    from rich.markup import escape

    from flows.ingest import ingest as ingest_flow
    from flows.ingest import next_steps
    from tasks.run.discover import SourceError
    from tasks.run.safety import check_source

    try:
        check_source(source)  # refused here, the user reads one sentence instead of a task's traceback
        report = ingest_flow(
            source, dataset, cfg, runner="sequential" if sequential else "ray",
            ray_address=ray_address, num_cpus=num_cpus, show_progress=True, retries=retries,
        )
    except SourceError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2) from None
    console.print(report.table())
    if report.failures:
        console.print(f"[yellow]{report.failed} failed, {report.rejected} rejected[/yellow]:")
        for f in report.failures:
            console.print(f"  {escape(f'[{f.status}]')} {escape(f.source_uri)}: {escape(f.error)}", soft_wrap=True)
        console.print(escape(f"Look at them with: storage.query.episodes({dataset!r}, where=\"status != 'ok'\")"))
        steps = next_steps([f.error for f in report.failures])
        if steps:
            console.print("[bold]What to try:[/bold]")
            for step in steps:
                console.print(f"  {escape(step)}", soft_wrap=True)
    if not report.success:
        console.print("[red]nothing could be ingested[/red]")
    return report


@app.command()
def demo(
    out: Path = typer.Option(Path("mu0-demo"), help="working directory for the corpus and the dataset"),
    episodes: int = typer.Option(4, min=1),
    camera: str = typer.Option("static"),
):
    """Make a small sim corpus, ingest it, print a summary and an example query."""
    from storage import query
    from tasks.sim.generate import generate_corpus

    corpus, dataset = out / "corpus", str(out / "traces")
    console.rule("1. simulate")
    with console.status("rendering Meta-World episodes"):
        generate_corpus(corpus, episodes, ALL_TASKS.split(","), camera=camera, max_steps=80)
    console.rule("2. ingest")
    report = run_ingest(str(corpus), dataset, _config("sim"))
    console.rule("3. query")
    eps = query.episodes(dataset, columns=["episode_id", "task", "status", "n_frames", "n_tracks", "n_moving", "track_coverage"])
    console.print(eps.to_pandas().assign(episode_id=lambda d: d.episode_id.str[:12]).to_string(index=False))
    ok = [r for r in eps.to_pylist() if r["status"] == "ok"]
    if ok:
        eid = ok[0]["episode_id"]
        console.print(f"\n>>> storage.query.samples_of({dataset!r}, {eid[:12]!r}...) -> frame 0 keypoints and futures")
        s = query.samples_of(dataset, eid)
        row = s.slice(0, 1).to_pylist()[0]
        console.print(f"{s.num_rows} sample frames; frame {row['frame']} has {len(row['keypoints_uv'])} moving keypoints")
        fut = [tuple(round(x, 3) for x in p) for p, ok in zip(row["future"][0], row["future_valid"][0]) if ok]
        console.print(f"keypoint 0 at {tuple(round(x, 1) for x in row['keypoints_uv'][0])} px; future (u px, v px, z m): {fut[:4]} ...")
        from models.text_embedder import embed_texts

        console.print(f"\n>>> mu0 query {dataset} --like 'open the drawer' --limit 3")
        hits = query.search(dataset, "captions", vector=embed_texts(["open the drawer"])[0], limit=3,
                            columns=["level", "start_frame", "end_frame", "instruction_1"])
        for h in hits.to_pylist():
            console.print(f"  {h['level']} (frames {h['start_frame']}-{h['end_frame']}): {h['instruction_1']}", markup=False)
    raise typer.Exit(code=0 if report.success else 1)


# Commands that live in their own modules (light imports: heavy ones happen when a command runs).
from flows.serve import serve_cli  # noqa: E402

app.command("serve")(serve_cli)

from flows.view_cli import view_cli  # noqa: E402

app.command("view")(view_cli)

from flows.query_cli import check_cli, datasets_cli, query_cli  # noqa: E402

app.command("query")(query_cli)
app.command("datasets")(datasets_cli)
app.command("check")(check_cli)

from flows.train_cli import evaluate_cli, predict_cli, pretrain_cli  # noqa: E402

app.command("pretrain")(pretrain_cli)
app.command("evaluate")(evaluate_cli)
app.command("predict")(predict_cli)

from flows.rollout_cli import rollout_cli  # noqa: E402

app.command("rollout")(rollout_cli)

from flows.finetune_cli import finetune_cli  # noqa: E402

app.command("finetune")(finetune_cli)

from flows.config_cli import config_app  # noqa: E402

app.add_typer(config_app, name="config")


if __name__ == "__main__":
    app()
