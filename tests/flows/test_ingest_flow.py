"""The ingest flow end to end: Prefect (test harness) + Ray (local, 2 CPUs) + Lance."""

from __future__ import annotations

import json
import shutil

import lance
import numpy as np
import pytest

from flows.ingest import ingest
from storage import query
from storage.dataset import open_table
from tasks.config import get_preset


@pytest.fixture(scope="module")
def bad_corpus(sim_corpus, tmp_path_factory):
    """Two good episodes plus every kind of bad input the issue names."""
    root = tmp_path_factory.mktemp("bad")
    good = sorted(p for p in sim_corpus.iterdir() if p.is_dir())
    for p in good[:2]:
        shutil.copytree(p, root / p.name)
    video = (good[0] / "video.mp4").read_bytes()
    (root / "empty.mp4").write_bytes(b"")
    (root / "truncated.mp4").write_bytes(video[: len(video) // 2])
    (root / "notes.mp4").write_text("this is a text file, not a video\n")
    wrong = root / "wrong-depth"
    shutil.copytree(good[0], wrong)
    d = np.load(wrong / "depth.npy")
    np.save(wrong / "depth.npy", d[:, ::2, ::2])
    nan = root / "nan-depth"
    shutil.copytree(good[1], nan)
    np.save(nan / "depth.npy", np.full_like(np.load(nan / "depth.npy"), np.nan))
    return root


def test_ingest_end_to_end_then_resume(prefect_harness, local_ray, sim_corpus, tmp_path):
    dataset = str(tmp_path / "traces")
    cfg = get_preset("sim")
    report = ingest(str(sim_corpus), dataset, cfg)
    assert report.discovered == 3 and report.skipped == 0
    assert report.ok + report.rejected == 3, report.failures
    assert report.ok >= 2 and report.failed == 0
    counts = query.counts(dataset)
    assert counts["episodes"] == 3
    assert counts["tracks"] == report.tracks > 100
    assert counts["frames"] == report.frames
    assert counts["samples"] > 0
    # one data commit per table, tagged with the run (the index build adds a version on top)
    for name in ("episodes", "tracks", "samples", "frames", "captions"):
        ds = open_table(dataset, name)
        assert ds.tags.list()[report.run_tag]["version"] == 1
        assert open_table(dataset, name, version=report.run_tag).count_rows() == counts[name]
    # samples: keypoints inside the image, future index 0 is the keypoint itself
    eps = query.episodes(dataset, where="status = 'ok'")
    s = query.samples_of(dataset, eps["episode_id"][0].as_py())
    row = s.slice(0, 1).to_pylist()[0]
    kp = np.asarray(row["keypoints_uv"], np.float32)
    fut = np.asarray(row["future"], np.float32)
    assert np.allclose(fut[:, 0, :2], kp, atol=1e-3)
    # captions: every ok episode has one "task" caption over all its frames, motion chunks tile it,
    # and every sample frame points at the captions that cover it
    for ep in eps.to_pylist():
        caps = query._read(dataset, "captions", f"episode_id = '{ep['episode_id']}'").to_pylist()
        [task] = [c for c in caps if c["level"] == "task"]
        assert (task["start_frame"], task["end_frame"]) == (0, ep["n_frames"] - 1)
        motion = sorted((c["start_frame"], c["end_frame"]) for c in caps if c["level"] == "motion")
        assert motion[0][0] == 0 and motion[-1][1] == ep["n_frames"] - 1
        assert all(b[0] == a[1] + 1 for a, b in zip(motion, motion[1:])), motion
        assert all(len(c["embedding"]) == 384 and c["instruction_1"] for c in caps)
        spans = {c["caption_id"]: (c["start_frame"], c["end_frame"]) for c in caps}
        for row in query.samples_of(dataset, ep["episode_id"]).select(["frame", "caption_ids"]).to_pylist():
            assert row["caption_ids"] and all(spans[i][0] <= row["frame"] <= spans[i][1] for i in row["caption_ids"])

    ds_version_before = open_table(dataset, "episodes").version
    again = ingest(str(sim_corpus), dataset, cfg)
    assert again.skipped == 3 and again.attempted == 0
    assert query.counts(dataset) == counts
    assert open_table(dataset, "episodes").version == ds_version_before


def test_larger_source_adds_only_new(prefect_harness, sim_corpus, tmp_path):
    dataset = str(tmp_path / "traces")
    cfg = get_preset("sim")
    first = sorted(p for p in sim_corpus.iterdir() if p.is_dir())[:1]
    manifest = tmp_path / "one.txt"
    manifest.write_text(f"{first[0]}\n")
    r1 = ingest(str(manifest), dataset, cfg, runner="sequential")
    assert r1.attempted == 1
    r2 = ingest(str(sim_corpus), dataset, cfg, runner="sequential")
    assert r2.skipped == 1 and r2.attempted == 2
    assert query.counts(dataset)["episodes"] == 3


def test_bad_inputs_become_failed_rows(prefect_harness, local_ray, bad_corpus, tmp_path):
    dataset = str(tmp_path / "traces")
    report = ingest(str(bad_corpus), dataset, get_preset("sim"))
    assert report.discovered == 7
    assert report.failed == 5 and report.ok + report.rejected == 2
    assert report.success
    eps = query.episodes(dataset).to_pylist()
    assert len(eps) == 7
    failed = {r["source_uri"].rsplit("/", 1)[-1]: r["errors"] for r in eps if r["status"] == "failed"}
    assert "empty" in failed["empty.mp4"] and "empty.mp4" in failed["empty.mp4"]
    assert "truncated.mp4" in failed["truncated.mp4"]
    assert "notes.mp4" in failed["notes.mp4"] and "decode" in failed["notes.mp4"]
    assert "depth.npy" in failed["wrong-depth"] and "shape" in failed["wrong-depth"]
    assert "depth.npy" in failed["nan-depth"] and "NaN" in failed["nan-depth"]


def test_nothing_ingestible_is_not_success(prefect_harness, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mp4").write_bytes(b"")
    report = ingest(str(src), str(tmp_path / "traces"), get_preset("sim"), runner="sequential")
    assert report.failed == 1 and not report.success
    assert lance.dataset(str(tmp_path / "traces" / "episodes.lance")).count_rows() == 1


def test_flow_posts_progress_and_summary_artifacts(prefect_harness, sim_corpus, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    one = sorted(p for p in sim_corpus.iterdir() if p.is_dir())[0]
    state = ingest(str(one), str(tmp_path / "traces"), get_preset("sim"), runner="sequential", return_state=True)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    kinds = {a.type: a for a in arts}
    assert kinds["progress"].data == 100.0
    rows = {r["item"]: r["value"] for r in json.loads(kinds["table"].data)}
    assert rows["episodes ok"] == "1" and rows["episodes failed"] == "0"
