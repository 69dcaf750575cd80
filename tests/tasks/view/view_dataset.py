"""A small ingested dataset for the viewer tests (tasks/view/scene.py, the viewers, `mu0 view`).

Built once per test session and shared across modules through `view_dataset(tmp_path_factory)`:
one 30-frame static-camera Meta-World episode, extracted sequentially with the `sim` preset and
committed like the ingest flow does (about 2 s).
"""

from __future__ import annotations

from pathlib import Path

from tasks.types import EpisodeSource

FAILED_ID = "f" * 64  # an episode that failed: an `episodes` row, no frames, no samples
_CACHE: dict[str, tuple[str, str, Path]] = {}


def view_dataset(tmp_path_factory) -> tuple[str, str]:
    """(dataset root, id of its "ok" episode); the dataset also holds FAILED_ID, failed in decode."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _CACHE:
        from storage.dataset import existing_episode_ids
        from storage.writer import commit_run
        from tasks.config import get_preset
        from tasks.run.episode import failed_result
        from tasks.run.ingest import ingest
        from tasks.sim.generate import generate_corpus

        out = Path(tmp_path_factory.mktemp("view"))
        generate_corpus(out / "corpus", 1, ["drawer-open"], camera="static", max_steps=30, seed=0)
        cfg = get_preset("sim")
        root = str(out / "traces")
        report = ingest(str(out / "corpus"), root, cfg)
        assert report.ok == 1 and report.attempted == 1, report.failures
        (ok_id,) = existing_episode_ids(root)
        broken = EpisodeSource(uri=str(out / "corpus" / "broken.mp4"), episode_id=FAILED_ID, corpus="sim", kind="video")
        failed = failed_result(broken, cfg, root, "decode", "moov atom not found")
        commit_run(root, {FAILED_ID: failed.fragments}, tag="failed-row")
        _CACHE[key] = (root, ok_id, out / "corpus")
    return _CACHE[key][:2]


def view_corpus(tmp_path_factory) -> Path:
    """The episode directory corpus the dataset was ingested from (one drawer-open episode)."""
    view_dataset(tmp_path_factory)
    return _CACHE[str(tmp_path_factory.getbasetemp())][2]
