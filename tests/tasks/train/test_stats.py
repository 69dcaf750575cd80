"""Dataset statistics: delta_scale by hand from the stored table, stored beside it, recomputed when stale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storage import query
from storage.dataset import open_table
from tasks.train.stats import STATS_FILE, compute_trace_stats, ensure_trace_stats, read_stats
from tasks.config import get_preset
from tasks.run.ingest import ingest


@pytest.fixture(scope="module")
def dataset(sim_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("stats") / "traces"
    ingest(str(sim_corpus), str(root), get_preset("sim"))
    return str(root)


def _by_hand(root: str, horizon: int) -> tuple[np.ndarray, int]:
    sizes = {r["episode_id"]: (r["width"], r["height"]) for r in query.episodes(root).to_pylist()}
    deltas = []
    rows = open_table(root, "samples").to_table().to_pylist()
    for row in rows:
        W, H = sizes[row["episode_id"]]
        for fut, ok in zip(row["future"], row["future_valid"]):
            f = np.asarray(fut, np.float64)[: horizon + 1]
            m = np.asarray(ok)[: horizon + 1]
            uv = (f[:, :2] + 0.5) / [W, H] * 2 - 1
            n = np.concatenate([uv, f[:, 2:]], 1)
            deltas.append(np.abs(n[1:] - n[0])[m[1:]])
    d = np.concatenate(deltas)
    return np.percentile(d, 95, axis=0), len(rows)


def test_delta_scale_is_the_p95_of_normalised_deltas(dataset):
    stats = compute_trace_stats(dataset, horizon=16)
    want, n_rows = _by_hand(dataset, 16)
    np.testing.assert_allclose(stats.delta_scale, want, rtol=1e-5)
    assert stats.n_samples == n_rows and stats.n_episodes >= 2
    assert 0.05 < stats.delta_scale[0] < 1.0 and 0.001 < stats.delta_scale[2] < 1.0  # uv normalised, z meters
    assert stats.depth_from == "frames" and 0.2 < stats.depth_p1 < stats.depth_p99 < 20


def test_stats_are_stored_and_recomputed_when_the_dataset_changes(dataset):
    first = ensure_trace_stats(dataset, horizon=32)
    stored = json.loads((open(f"{dataset}/{STATS_FILE}").read()))
    assert stored["versions"] == first.versions and stored["horizon"] == 32
    path = f"{dataset}/{STATS_FILE}"
    with open(path, "w") as f:
        json.dump({**stored, "computed_at": "marker"}, f)
    assert ensure_trace_stats(dataset, horizon=32).computed_at == "marker"  # fresh: read back, not recomputed
    ds = open_table(dataset, "samples")
    ds.delete("frame < 10")  # a new samples version
    again = ensure_trace_stats(dataset, horizon=32)
    assert again.versions["samples"] > first.versions["samples"]
    assert again.n_samples < first.n_samples
    assert read_stats(dataset) == again
    assert ensure_trace_stats(dataset, horizon=8).horizon == 8  # another horizon is another statistic
