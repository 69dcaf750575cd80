"""Sim demonstrations as data: ingest stores states.npy / actions.npy in the `demonstrations` table, exactly,
once per episode, and `storage.demonstrations.read_demonstrations` gives them back as arrays."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from storage import query
from storage.check import check_dataset
from storage.dataset import open_table
from storage.demonstrations import read_demonstrations
from tasks.config import get_preset, with_overrides
from tasks.extract.rows import demonstration_rows
from tasks.run.discover import discover
from tasks.run.episode import run_stages, stages_until
from tasks.run.ingest import commit_results, find_new, ingest
from tasks.run.sequential import SequentialRunner

CONFIG = with_overrides(get_preset("sim"), {"captions.backend": "off"})


@pytest.fixture(scope="module")
def corpus(sim_corpus, tmp_path_factory):
    """One Meta-World episode with its demonstration, and a copy of it without actions.npy / states.npy."""
    out = tmp_path_factory.mktemp("demos") / "corpus"
    source = sorted(p for p in sim_corpus.iterdir() if p.is_dir())[0]
    shutil.copytree(source, out / "with-demo")
    shutil.copytree(source, out / "without-demo", ignore=shutil.ignore_patterns("actions.npy", "states.npy"))
    return out


def ids_by_dir(root) -> dict[str, str]:
    return {r["source_uri"].rsplit("/", 1)[-1]: r["episode_id"] for r in query.episodes(str(root)).to_pylist()}


def test_sim_demonstrations_are_stored_exactly_and_read_back(corpus, tmp_path):
    root = str(tmp_path / "ds")
    report = ingest(str(corpus), root, CONFIG)
    assert report.failed == 0, report.failures
    ids = ids_by_dir(root)
    demos = read_demonstrations(root)
    assert set(demos) == {ids["with-demo"]}  # the copy without the .npy files writes no rows
    d = demos[ids["with-demo"]]
    states, actions = np.load(corpus / "with-demo/states.npy"), np.load(corpus / "with-demo/actions.npy")
    assert d.states.dtype == np.float32 and np.array_equal(d.states, states) and np.array_equal(d.actions, actions)
    n = len(states)
    assert np.array_equal(d.frames, np.arange(n)) and d.fps == 20.0  # the sim preset keeps every frame
    assert np.array_equal(d.timestamps, (np.arange(n) / 20).astype(np.float32))
    assert d.instruction == query.episodes(root).to_pylist()[0]["instruction"] != "" and d.source_episode_index is None
    assert read_demonstrations(root, [ids["without-demo"]]) == {} and read_demonstrations(root, []) == {}
    assert [f.check for f in check_dataset(root) if not f.ok] == []


def test_a_second_run_and_a_second_commit_add_no_rows(corpus, tmp_path):
    root = str(tmp_path / "ds")
    ingest(str(corpus), root, CONFIG)
    rows = open_table(root, "demonstrations").count_rows()
    again = ingest(str(corpus), root, CONFIG)
    assert again.skipped == 2 and open_table(root, "demonstrations").count_rows() == rows
    # Two runs that extracted the same episodes concurrently: the later commit finds the ids and skips them.
    todo = discover(str(corpus), CONFIG)
    results = SequentialRunner().extract(todo, CONFIG, root)
    commit_results(root, results, CONFIG, "ingest-late")
    assert open_table(root, "demonstrations").count_rows() == rows
    assert find_new(str(corpus), root, CONFIG)[0] == []
    assert [f.check for f in check_dataset(root) if not f.ok] == []


def test_subsampled_frames_keep_every_step(corpus):
    cfg = with_overrides(CONFIG, {"decode.target_fps": 10})
    (src,) = [s for s in discover(str(corpus), cfg) if s.uri.endswith("with-demo")]
    ep = run_stages(src, cfg, stages_until("decode"))
    rows = demonstration_rows(ep).to_pydict()
    n = len(np.load(corpus / "with-demo/actions.npy"))
    assert rows["frame_index"] == list(range(n))
    assert rows["frame"] == [i // 2 if i % 2 == 0 else None for i in range(n)]  # 20 fps stored at 10


def test_a_demonstration_off_by_frames_fails_naming_the_file(corpus, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(corpus / "with-demo", bad)
    np.save(bad / "actions.npy", np.zeros((3, 4), np.float32))
    (src,) = discover(str(bad), CONFIG)
    ep = run_stages(src, CONFIG, stages_until("decode"))
    assert ep.status == "failed" and ep.errors["decode"].startswith(f"{bad}/actions.npy: 3 steps for a video of"), ep.errors
