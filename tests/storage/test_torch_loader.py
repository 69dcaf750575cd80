"""The Lance torch loader: episode-level split, raw rows consistent with the stored table, spawn workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from storage import query
from storage.torch_loader import LanceTraceDataset, TraceIndex, make_loader, split_of
from tasks.config import get_preset
from tasks.run.ingest import ingest


@pytest.fixture(scope="module")
def dataset(sim_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("loader") / "traces"
    counts = ingest(str(sim_corpus), str(root), get_preset("sim"))
    assert counts.ok >= 2, counts
    return str(root)


def test_split_is_per_episode_and_near_the_fraction():
    ids = [f"episode-{i}" for i in range(4000)]
    sides = [split_of(e, 0.05) for e in ids]
    assert sides == [split_of(e, 0.05) for e in ids]  # deterministic
    frac = sides.count("eval") / len(ids)
    assert 0.04 < frac < 0.06, frac
    assert all(split_of(e, 0.0) == "train" for e in ids[:100])


def test_train_and_eval_never_share_an_episode(dataset):
    index = TraceIndex.build(dataset)
    for frac in (0.3, 0.5, 0.7):
        train, ev = index.split("train", frac), index.split("eval", frac)
        assert not set(train.episode_ids) & set(ev.episode_ids)
        assert len(train.rows) + len(ev.rows) == len(index.rows)
    assert len(index.split("all", 0.5).rows) == query.counts(dataset)["samples"]


def test_rows_match_the_stored_samples(dataset):
    ds = LanceTraceDataset(dataset, split="all")
    raw = ds[3]
    stored = query.samples_of(dataset, raw["episode_id"])
    row = [r for r in stored.to_pylist() if r["frame"] == raw["frame"]][0]
    np.testing.assert_array_equal(raw["future_valid"], np.asarray(row["future_valid"]))
    fut = np.asarray(row["future"], np.float32)
    ok = raw["future_valid"]
    np.testing.assert_array_equal(raw["future"][ok], fut[ok])
    assert np.isnan(raw["future"][~ok]).all()
    np.testing.assert_array_equal(raw["keypoints_uv"], np.asarray(row["keypoints_uv"], np.float32))
    jpeg_image = raw["image"]
    assert jpeg_image.shape == (raw["episode"]["height"], raw["episode"]["width"], 3) and jpeg_image.dtype == np.uint8
    assert raw["depth"].shape == jpeg_image.shape[:2] and 0.1 < np.median(raw["depth"][raw["depth"] > 0]) < 10
    assert raw["episode"]["instruction"]


def frames_of(items: list[dict]) -> list[int]:
    return [it["frame"] for it in items]


def test_dataset_pickles_without_lance_handles_and_spawn_workers_read(dataset):
    ds = LanceTraceDataset(dataset, split="all", read_depth=False)
    ds[0]  # opens handles in this process
    assert ds.rows._tables
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.rows._tables == {}
    loader = make_loader(ds, batch_size=2, collate_fn=frames_of, shuffle=False, num_workers=1)
    frames = [f for batch in loader for f in batch]
    assert frames == [int(f) for f in ds.index.frames]


def test_usable_slots_have_a_keypoint_with_enough_valid_steps(dataset):
    full = LanceTraceDataset(dataset, split="all", read_depth=False)
    usable = LanceTraceDataset(dataset, split="all", read_depth=False, min_valid=10, horizon=32)
    assert 0 < len(usable) <= len(full)
    kept = set(zip(usable.index.episode_ids.tolist(), usable.index.frames.tolist()))
    for i in range(0, len(full), 7):
        raw = full[i]
        want = bool((raw["future_valid"][:, 1:33].sum(1) >= 10).any())
        assert ((raw["episode_id"], raw["frame"]) in kept) == want
