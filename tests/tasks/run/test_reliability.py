"""Nothing lost, nothing twice: runs killed at exact places, concurrent runs, dead Ray workers.

Faults come from outside the code under test: a real `ingest` in a child process, paused at a named
fault point (storage/faults.py) and then SIGKILLed with its whole process group. After the repair,
each dataset must equal an uninterrupted run's: same episode ids, same rows per table, every Lance
version readable, and `check_dataset` clean.
"""

from __future__ import annotations

import os
import time
import subprocess
import sys
from pathlib import Path

import lance
import pytest

from storage.check import check_dataset
from storage.dataset import open_table, table_uri
from storage.runs import STALE_FRAGMENT_S, stale_data_files
from storage.schema import TABLES
from storage.writer import remove_stale_data_files
from tasks.config import get_preset, with_overrides
from tasks.run.ingest import ingest
from tests.faults import REPO, kill_at

CONFIG = with_overrides(get_preset("sim"), {"captions.backend": "off"})  # captions add minutes, not coverage here
SCRIPT = (
    "import sys; from tasks.config import get_preset, with_overrides; from tasks.run.ingest import ingest; "
    "r = ingest(sys.argv[1], sys.argv[2], with_overrides(get_preset('sim'), {'captions.backend': 'off'})); "
    "print('ok', r.ok, 'failed', r.failed)"
)


def layout(root: str) -> dict[str, tuple[int, tuple[str, ...]]]:
    """Per table: rows and the sorted episode ids (with repeats, so a duplicate shows)."""
    out = {}
    for name in TABLES:
        ds = open_table(root, name)
        ids = [] if ds is None else ds.to_table(columns=["episode_id"]).column("episode_id").to_pylist()
        out[name] = (len(ids), tuple(sorted(ids)))
    return out


def all_versions_readable(root: str) -> None:
    for name in TABLES:
        if open_table(root, name) is None:
            continue
        uri = table_uri(root, name)
        for v in lance.dataset(uri).versions():
            lance.dataset(uri, version=v["version"]).count_rows()


def failures(root: str) -> list[str]:
    return [f"{f.check}: {f.examples}" for f in check_dataset(root) if not f.ok]


def child(corpus, root, **fault) -> subprocess.Popen:
    env = {**os.environ, **fault}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(corpus), str(root)], env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )


def kill_run_at(corpus, root, point: str, tmp_path) -> None:
    """Run ingest in a child until it reaches `point`, then SIGKILL its process group."""
    kill_at(SCRIPT, [str(corpus), str(root)], point, tmp_path / f"reached-{point.replace(':', '-')}")


@pytest.fixture(scope="module")
def reference(sim_corpus, tmp_path_factory):
    """What an uninterrupted run writes."""
    root = str(tmp_path_factory.mktemp("reference") / "traces")
    report = ingest(str(sim_corpus), root, CONFIG)
    assert report.ok >= 2 and report.failed == 0, report.failures
    assert failures(root) == []
    return layout(root)


def test_killed_between_table_commits_is_completed_by_the_next_run(sim_corpus, reference, tmp_path):
    root = str(tmp_path / "traces")
    kill_run_at(sim_corpus, root, "committed:tracks", tmp_path)
    assert layout(root)["tracks"][0] > 0 and open_table(root, "episodes") is None  # truly half-committed
    broken = failures(root)
    assert any("half-committed" in f for f in broken) and any("tracks" in f for f in broken), broken

    report = ingest(str(sim_corpus), root, CONFIG)
    assert layout(root) == reference
    assert report.skipped == report.discovered  # the repair completed them; nothing re-extracted twice
    assert failures(root) == []
    all_versions_readable(root)


def test_killed_during_extraction_leaves_nothing_and_the_rerun_is_whole(sim_corpus, reference, tmp_path):
    root = str(tmp_path / "traces")
    kill_run_at(sim_corpus, root, "stage:lift", tmp_path)
    assert open_table(root, "episodes") is None
    left = stale_data_files(root, grace_s=0)
    assert left  # the dead run's frames fragment, written ahead on the side thread, never committed
    ingest(str(sim_corpus), root, CONFIG)
    assert layout(root) == reference
    assert failures(root) == []  # its files are younger than the grace period: maybe a live run's
    all_versions_readable(root)

    old = time.time() - 2 * STALE_FRAGMENT_S
    for path in left:
        os.utime(path, (old, old))
    assert any("stale uncommitted" in f for f in failures(root))
    assert sorted(remove_stale_data_files(root)) == sorted(left)
    assert failures(root) == [] and layout(root) == reference
    all_versions_readable(root)


def test_concurrent_runs_of_one_corpus_store_each_episode_once(sim_corpus, reference, tmp_path):
    root = tmp_path / "traces"
    runs = [child(sim_corpus, root) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    assert layout(str(root)) == reference
    assert failures(str(root)) == []
    all_versions_readable(str(root))


def test_concurrent_runs_of_different_corpora_store_both(sim_corpus, reference, tmp_path):
    halves = [tmp_path / "a", tmp_path / "b"]
    for i, d in enumerate(sorted(p for p in Path(sim_corpus).iterdir() if p.is_dir())):
        halves[i % 2].mkdir(exist_ok=True)
        (halves[i % 2] / d.name).symlink_to(d)
    root = tmp_path / "traces"
    runs = [child(h, root) for h in halves]
    outs = [p.communicate(timeout=600)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    assert layout(str(root)) == reference
    assert failures(str(root)) == []


def test_a_killed_ray_worker_is_retried_and_its_episode_lands_once(local_ray, sim_corpus, reference, tmp_path, monkeypatch):
    from tasks.run.ray_runner import RayRunner

    monkeypatch.setenv("MU0_FAULT", "kill@stage:track")
    monkeypatch.setenv("MU0_FAULT_ONCE", str(tmp_path / "killed-once"))
    root = str(tmp_path / "traces")
    report = ingest(str(sim_corpus), root, CONFIG, runner=RayRunner(retries=2))
    assert (tmp_path / "killed-once").exists()  # a worker really died
    assert report.failed == 0 and layout(root) == reference
    assert failures(root) == []


def test_a_worker_that_dies_on_every_try_fails_only_its_episode(local_ray, sim_corpus, tmp_path, monkeypatch):
    from tasks.run.ray_runner import RayRunner

    monkeypatch.setenv("MU0_FAULT", "kill@stage:track")
    root = str(tmp_path / "traces")
    report = ingest(str(sim_corpus), root, CONFIG, runner=RayRunner(retries=1))
    assert report.failed == report.attempted > 0  # every episode dies in track: all failed, the run completes
    assert all("Ray task failed 2 times" in f.error for f in report.failures), report.failures
    assert failures(root) == []
