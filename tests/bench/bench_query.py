"""Query latency benchmark: episode lookup (BTREE), full-text (INVERTED), vector top-10 (IVF_PQ).

    .venv/bin/python -m tests.bench.bench_query                      # 1,000,000 samples, 100,000 captions
    .venv/bin/python -m tests.bench.bench_query --rows 20000 --captions 8000 --queries 20   # quick check

Builds schema-true synthetic tables with storage.writer (fragments + one commit) and the indexes
with `ensure_indexes`, then times each query `--queries` times through `storage.query.search`
(which opens the table, as the CLI does) and on an already open dataset, and prints a markdown
table of median and p90 latency. Samples rows are light (one keypoint, L=8, Lh=4 via
`samples_schema`) so the table builds in a minute or two. Caption embeddings are clustered unit
vectors (real sentence embeddings are not uniform on the sphere); vector recall@10 is measured
against exact search for several nprobes.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa

from storage import query
from storage import schema as S
from storage.dataset import open_table
from storage.writer import commit, ensure_indexes, write_uncommitted

VERBS = ["open", "close", "push", "pull", "press", "pick", "place", "lift", "slide", "turn", "wipe", "pour"]
OBJECTS = ["drawer", "button", "cube", "puck", "door", "lid", "cup", "handle", "knob", "towel", "bowl", "block"]
PLACES = ["left", "right", "forward", "backward", "up", "down", "slowly", "quickly"]
TARGETS = {"episode lookup": 10.0, "full-text top-10": 20.0, "vector top-10": 20.0}
FRAMES_PER_EPISODE = 200
CHUNK = 100_000


def fixed(values: np.ndarray, width: int, dtype=pa.float32()) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), dtype), width)


def one_per_row(child: pa.Array, n: int) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1), pa.int32()), child)


def sample_chunk(start: int, n: int, schema: pa.Schema, L: int, Lh: int, rng) -> pa.Table:
    rows = np.arange(start, start + n)
    eids = pa.array([f"{i // FRAMES_PER_EPISODE:064x}" for i in rows])  # 64-char ids, like sha256
    uv = rng.uniform(0, 300, (n, 2)).astype(np.float32)
    return pa.table(
        {
            "episode_id": eids,
            "frame": pa.array(rows % FRAMES_PER_EPISODE, pa.int32()),
            "keypoints_uv": one_per_row(fixed(uv, 2), n),
            "track_id": one_per_row(pa.array(np.zeros(n, np.int32)), n),
            "future": one_per_row(pa.FixedSizeListArray.from_arrays(fixed(rng.normal(size=(n * L, 3)).astype(np.float32), 3), L), n),
            "future_valid": one_per_row(fixed(np.ones((n, L), bool), L, pa.bool_()), n),
            "history": one_per_row(pa.FixedSizeListArray.from_arrays(fixed(rng.normal(size=(n * Lh, 3)).astype(np.float32), 3), Lh), n),
            "history_valid": one_per_row(fixed(np.ones((n, Lh), bool), Lh, pa.bool_()), n),
            "cluster_id": one_per_row(pa.array(np.zeros(n, np.int32)), n),
            "caption_ids": pa.array([[]] * n, pa.list_(pa.int32())),
        },
        schema=schema,
    )


def clustered_unit_vectors(n: int, rng, clusters: int = 1000, spread: float = 0.35) -> np.ndarray:
    centres = rng.normal(size=(clusters, S.EMBEDDING_DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.normal(size=(n, S.EMBEDDING_DIM)).astype(np.float32) * (spread / np.sqrt(S.EMBEDDING_DIM))
    v = centres[rng.integers(0, clusters, n)] + noise
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def caption_chunk(start: int, emb: np.ndarray, rng) -> pa.Table:
    n = len(emb)
    v, o, p = (rng.integers(0, len(x), n) for x in (VERBS, OBJECTS, PLACES))
    t1 = [f"{VERBS[a]} the {OBJECTS[b]} {PLACES[c]}" for a, b, c in zip(v, o, p)]
    return pa.table(
        {
            "episode_id": pa.array([f"{(start + i) // 20:064x}" for i in range(n)]),
            "caption_id": pa.array(np.arange(start, start + n) % 20, pa.int32()),
            "level": pa.array(rng.choice(["motion", "subtask", "task"], n)),
            "start_frame": pa.array(np.zeros(n, np.int32)),
            "end_frame": pa.array(np.full(n, 40, np.int32)),
            "instruction_1": pa.array(t1),
            "instruction_2": pa.array([f"the robot will {s}" for s in t1]),
            "instruction_3": pa.array([f"{OBJECTS[b]} {VERBS[a]}" for a, b in zip(v, o)]),
            "skill_labels": pa.array([[VERBS[a]] for a in v], pa.list_(pa.string())),
            "embodiment": pa.array(["robot"] * n),
            "embedding": fixed(emb, S.EMBEDDING_DIM),
        },
        schema=S.CAPTIONS,
    )


def build(root: str, rows: int, captions: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    L, Lh = 8, 4
    schema = S.samples_schema(L, Lh)
    t0 = time.perf_counter()
    frags = [f for s in range(0, rows, CHUNK) for f in write_uncommitted(root, "samples", sample_chunk(s, min(CHUNK, rows - s), schema, L, Lh, rng), schema)]
    commit(root, "samples", frags, schema, tag="bench")
    emb = clustered_unit_vectors(captions, rng)
    frags = [f for s in range(0, captions, CHUNK) for f in write_uncommitted(root, "captions", caption_chunk(s, emb[s:s + CHUNK], rng), S.CAPTIONS)]
    commit(root, "captions", frags, S.CAPTIONS, tag="bench")
    t1 = time.perf_counter()
    done = ensure_indexes(root)
    t2 = time.perf_counter()
    print(f"built {rows} samples + {captions} captions in {t1 - t0:.1f} s; indexes {done} in {t2 - t1:.1f} s")
    return emb


def timed(fn, n: int) -> tuple[float, float]:
    fn()  # warm: index pages into the cache, as on a serving process
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ms.append(1000 * (time.perf_counter() - t))
    return float(np.median(ms)), float(np.percentile(ms, 90))


def recall_at_10(root: str, queries: np.ndarray, nprobes: int, refine: int) -> float:
    """Share of the exact top-10 (Lance flat search, `use_index=False`) that the index returns."""
    ds = open_table(root, "captions")

    def top10(**extra) -> set[int]:
        near = {"column": "embedding", "k": 10, "metric": "cosine", **extra}
        return set(ds.to_table(columns=["caption_id"], nearest=near, with_row_id=True)["_rowid"].to_pylist())

    hits = sum(len(top10(q=q, use_index=False) & top10(q=q, nprobes=nprobes, refine_factor=refine)) for q in queries)
    return hits / (10 * len(queries))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000, help="samples rows")
    ap.add_argument("--captions", type=int, default=100_000, help="captions rows")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="build here and keep it (default: a temp dir, removed after)")
    args = ap.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="mu0-bench-query-")
    try:
        emb = build(root, args.rows, args.captions, args.seed)
        rng = np.random.default_rng(args.seed + 1)
        episodes = [f"{i:064x}" for i in rng.integers(0, max(1, args.rows // FRAMES_PER_EPISODE), args.queries + 1)]
        words = [str(w) for w in rng.choice(OBJECTS + VERBS, args.queries + 1)]
        qv = emb[rng.integers(0, len(emb), args.queries + 1)] + rng.normal(size=(args.queries + 1, S.EMBEDDING_DIM)).astype(np.float32) * 0.02
        qv /= np.linalg.norm(qv, axis=1, keepdims=True)
        it = {k: iter(range(10**9)) for k in TARGETS}

        def nxt(k, xs):
            return xs[next(it[k]) % len(xs)]

        samples, caps = open_table(root, "samples"), open_table(root, "captions")
        cases = {
            "episode lookup": (
                lambda: query.search(root, "samples", episode=nxt("episode lookup", episodes)),
                lambda: samples.to_table(filter=f"episode_id = '{nxt('episode lookup', episodes)}'"),
            ),
            "full-text top-10": (
                lambda: query.search(root, "captions", text=nxt("full-text top-10", words), limit=10, columns=["caption_id", "instruction_1"]),
                lambda: caps.to_table(full_text_query=nxt("full-text top-10", words), limit=10, columns=["caption_id", "instruction_1", "_score"]),
            ),
            "vector top-10": (
                lambda: query.search(root, "captions", vector=nxt("vector top-10", qv), limit=10, columns=["caption_id", "instruction_1"]),
                lambda: caps.to_table(nearest={"column": "embedding", "q": nxt("vector top-10", qv), "k": 10, "metric": "cosine",
                                               "nprobes": query.NPROBES, "refine_factor": query.REFINE_FACTOR},
                                      columns=["caption_id", "instruction_1", "_distance"]),
            ),
        }
        print(f"\n{args.rows:,} samples rows, {args.captions:,} captions rows, {args.queries} queries each\n")
        print("| query | storage.query.search median / p90 (ms) | open dataset median / p90 (ms) | target median |")
        print("|---|---|---|---|")
        for name, (api, raw) in cases.items():
            a, r = timed(api, args.queries), timed(raw, args.queries)
            print(f"| {name} | {a[0]:.1f} / {a[1]:.1f} | {r[0]:.1f} / {r[1]:.1f} | < {TARGETS[name]:.0f} ms |")
        print("\n| nprobes | refine_factor | recall@10 vs exact |\n|---|---|---|")
        for nprobes, refine in ((10, 1), (20, 5), (10, 10), (query.NPROBES, query.REFINE_FACTOR), (40, 10)):
            print(f"| {nprobes} | {refine} | {recall_at_10(root, qv[:20], nprobes, refine):.3f} |")
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
