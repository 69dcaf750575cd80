"""`mu0 view DATASET --episode ID`: look at an episode's traces (viser scene, rerun recording, overlay video)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # a refusal stays one line


def view_cli(
    dataset: str = typer.Argument(..., help="Lance trace dataset (local path or URI)"),
    episode: str = typer.Option(..., "--episode", "-e", help="episode id, or a unique prefix of one"),
    frame: int = typer.Option(0, "--frame", "-t", min=0, help="stored frame to show first"),
    port: int = typer.Option(8080, "--port", help="port of the viser server"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind the viser server to"),
    rrd: Optional[Path] = typer.Option(None, "--rrd", help="write a rerun recording to this file and exit"),
    mp4: Optional[Path] = typer.Option(None, "--mp4", help="write a 2D overlay video (future traces) to this file and exit"),
):
    """Show EPISODE of DATASET: an interactive 3D scene (viser) until Ctrl-C, or write --rrd / --mp4 and exit."""
    from tasks.view.scene import EpisodeNotFound, load_scene, resolve_episode

    try:
        episode_id = resolve_episode(dataset, episode)
        scene = load_scene(dataset, episode_id)
    except EpisodeNotFound as exc:
        err_console.print(f"[red]mu0 view:[/red] {exc}", highlight=False)
        raise typer.Exit(code=2) from None
    if frame >= scene.n_frames:
        err_console.print(f"[red]mu0 view:[/red] --frame {frame} is outside 0..{scene.n_frames - 1}", highlight=False)
        raise typer.Exit(code=2)
    if rrd is not None or mp4 is not None:
        if rrd is not None:
            from tasks.view.rerun_recording import write_rrd

            write_rrd(dataset, episode_id, rrd)
            console.print(f"wrote {rrd} (open it with `rerun {rrd}`)")
        if mp4 is not None:
            from tasks.view.overlay import write_overlay_mp4

            n = write_overlay_mp4(dataset, episode_id, mp4)
            console.print(f"wrote {mp4} ({n} frames)")
        return
    from tasks.view.viser_server import serve_scene

    try:
        viewer = serve_scene(dataset, episode_id, frame=frame, host=host, port=port)
    except OSError as exc:
        err_console.print(f"[red]mu0 view:[/red] cannot serve on {host}:{port}: {exc}", highlight=False)
        raise typer.Exit(code=1) from None
    # Ctrl-C / SIGTERM set an event instead of raising KeyboardInterrupt wherever the main thread
    # happens to be (inside a library's lock, say), which can leave the process unable to exit.
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        console.print(f"episode {episode_id[:12]} ({scene.n_frames} frames) at {viewer.url}  (Ctrl-C to stop)")
        stop.wait()
    finally:
        viewer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
