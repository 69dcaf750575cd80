"""Validate a trace dataset the way a careful user would before training on it.

Every check is a pure function over Arrow tables (or plain dicts built from them) returning a
`Finding`: what was checked, how many items, how many failed, and the first few offenders. The
only function that reads the dataset is `check_dataset`; it streams `samples` in batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage import schema as S
from storage.dataset import open_table
from storage.query import leaf_values
from storage.runs import RunManifest, stale_data_files

MAX_EXAMPLES = 5
MAX_REPROJECTION_PX = 0.5  # keypoints_uv is the reprojection of tracks.xyz through camera t
BATCH_ROWS = 4096


@dataclass
class Finding:
    """Result of one check: `failed` of `checked` items are wrong; `examples` name the first few."""

    check: str
    checked: int = 0
    failed: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def record(self, checked: int, bad: list[str]) -> "Finding":
        """Count `checked` items of which `bad` (descriptions) failed."""
        self.checked += checked
        self.failed += len(bad)
        self.examples += bad[: MAX_EXAMPLES - len(self.examples)]
        return self

    def merge(self, other: "Finding") -> "Finding":
        self.checked += other.checked
        self.failed += other.failed
        self.examples += other.examples[: MAX_EXAMPLES - len(self.examples)]
        return self


def _eid(e: str) -> str:
    return e[:12]


def expected_schema(table: str, stored: pa.Schema) -> pa.Schema | None:
    """The contract for `table`; samples take L and Lh from the stored schema metadata (None if absent)."""
    if table != "samples":
        return S.table_schemas()[table]
    meta = stored.metadata or {}
    if b"future_len" not in meta or b"history_len" not in meta:
        return None
    return S.table_schemas(int(meta[b"future_len"]), int(meta[b"history_len"]))["samples"]


def check_schema(table: str, stored: pa.Schema) -> Finding:
    """Columns and types equal the storage.schema contract (nullability aside)."""
    f = Finding(f"{table}: schema matches storage.schema")
    want = expected_schema(table, stored)
    if want is None:
        return f.record(1, ["schema metadata lacks future_len/history_len"])
    have = {x.name: x.type for x in stored}
    bad = [f"missing column {x.name}" for x in want if x.name not in have]
    bad += [f"{x.name}: {have[x.name]} != {x.type}" for x in want if x.name in have and have[x.name] != x.type]
    bad += [f"unexpected column {n}" for n in have if n not in want.names]
    return f.record(len(want), bad)


def _row_of(offsets: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Row number of each flattened item index."""
    return np.searchsorted(offsets, items, side="right") - 1


def check_sample_lists(samples: pa.Table) -> Finding:
    """Per row, every per-keypoint list has one entry per keypoint."""
    f = Finding("samples: per-keypoint lists aligned")
    lists = ["track_id", "future", "future_valid", "history", "history_valid", "cluster_id"]
    n = pc.list_value_length(samples["keypoints_uv"]).to_numpy(zero_copy_only=False)
    bad = np.zeros(samples.num_rows, bool)
    for c in lists:
        bad |= pc.list_value_length(samples[c]).to_numpy(zero_copy_only=False) != n
    eids, frames = samples["episode_id"].to_pylist(), samples["frame"].to_pylist()
    return f.record(samples.num_rows, [f"{_eid(eids[i])} frame {frames[i]}" for i in np.flatnonzero(bad)])


def _keypoint_frame(samples: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode_id per keypoint, frame per keypoint, row offsets)."""
    n = pc.list_value_length(samples["keypoints_uv"]).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = np.repeat(np.arange(samples.num_rows), n)
    eids = np.asarray(samples["episode_id"].to_pylist(), dtype=object)
    return eids[rows], samples["frame"].to_numpy()[rows], np.concatenate([[0], np.cumsum(n)])


def check_keypoints_in_image(samples: pa.Table, sizes: dict[str, tuple[int, int]]) -> Finding:
    """keypoints_uv inside the image of its episode (pixel centres, half-pixel border included)."""
    f = Finding("samples: keypoints inside the image")
    uv = leaf_values(samples["keypoints_uv"]).reshape(-1, 2)
    eids, frames, _ = _keypoint_frame(samples)
    wh = np.array([sizes.get(e, (0, 0)) for e in eids], np.float64).reshape(-1, 2)
    inside = (uv >= -0.5).all(1) & (uv[:, 0] <= wh[:, 0] - 0.5) & (uv[:, 1] <= wh[:, 1] - 0.5)
    bad = [f"{_eid(eids[i])} frame {frames[i]}: uv ({uv[i, 0]:.1f}, {uv[i, 1]:.1f}) outside {int(wh[i, 0])}x{int(wh[i, 1])}"
           for i in np.flatnonzero(~inside)]
    return f.record(len(uv), bad)


def check_sample_values(samples: pa.Table) -> Finding:
    """keypoints finite; future/history finite wherever their valid mask is True."""
    f = Finding("samples: finite values where valid")
    uv = leaf_values(samples["keypoints_uv"]).reshape(-1, 2)
    eids, frames, _ = _keypoint_frame(samples)
    bad_kp = ~np.isfinite(uv).all(1)
    for name in ("future", "history"):
        vals = leaf_values(samples[name])
        valid = leaf_values(samples[f"{name}_valid"]).astype(bool)
        n_steps = valid.size // max(1, len(uv))
        vals = vals.reshape(len(uv), n_steps, 3)
        bad_kp |= (valid.reshape(len(uv), n_steps) & ~np.isfinite(vals).all(-1)).any(1)
    bad = [f"{_eid(eids[i])} frame {frames[i]} keypoint {i}" for i in np.flatnonzero(bad_kp)]
    return f.record(len(uv), bad)


def check_references(table: str, episode_ids: list[str], status: dict[str, str], allowed: tuple[str, ...]) -> Finding:
    """Every episode_id exists in episodes with an allowed status."""
    f = Finding(f"{table}: episodes exist with status {'/'.join(allowed)}")
    ids = set(episode_ids)
    bad = [f"{_eid(e)}: {status.get(e, 'not in episodes')}" for e in sorted(ids) if status.get(e) not in allowed]
    return f.record(len(ids), bad)


def check_unique_episodes(episode_ids: list[str]) -> Finding:
    """Every episode id once in `episodes` (two runs of one corpus must not both land)."""
    seen: dict[str, int] = {}
    for e in episode_ids:
        seen[e] = seen.get(e, 0) + 1
    return Finding("episodes: ids unique").record(len(seen), [f"{_eid(e)} stored {n} times" for e, n in seen.items() if n > 1])


def expected_tables(row: dict) -> tuple[str, ...]:
    """Tables that must hold rows of an episode, from what its `episodes` row says was extracted."""
    if row["status"] == "failed":
        return ()
    need = ["frames"] if row["n_frames"] else []
    need += ["tracks"] if row["n_tracks"] else []
    if row["status"] == "ok":
        need += ["samples"] if row["n_samples"] else []
        captions = json.loads(row["config"] or "{}").get("captions", {}).get("backend", "off")
        need += ["captions"] if captions != "off" and row["n_frames"] else []
    return tuple(need)


def check_complete_episodes(rows: list[dict], present: dict[str, set[str]]) -> Finding:
    """Each episode has its rows in every table it needs (a run that died between commits leaves holes)."""
    bad = []
    for row in rows:
        missing = [t for t in expected_tables(row) if row["episode_id"] not in present.get(t, set())]
        if missing:
            bad.append(f"{_eid(row['episode_id'])} ({row['status']}) has no rows in {', '.join(missing)}")
    return Finding("episodes: rows in every table").record(len(rows), bad)


def check_pending_runs(tags: list[str]) -> Finding:
    """No run left half-committed (its manifest is still in _runs/; the next ingest or `mu0 check --repair` completes it)."""
    return Finding("runs: none half-committed").record(max(1, len(tags)), [f"run {t} died between table commits" for t in tags])


def check_stale_files(stale: list) -> Finding:
    """No data files left by runs killed before their commit (older than STALE_FRAGMENT_S; `--repair` deletes them)."""
    return Finding("tables: no stale uncommitted data files").record(
        max(1, len(stale)), [f"{p} (delete with mu0 check --repair)" for p in stale]
    )


def check_episode_cameras(episodes: pa.Table) -> Finding:
    """ok episodes: finite K, one finite w2c and one frame_index entry per stored frame."""
    f = Finding("episodes: cameras and frame counts")
    bad = []
    rows = episodes.select(["episode_id", "status", "n_frames", "K", "w2c", "frame_index"]).to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        n, e = r["n_frames"], _eid(r["episode_id"])
        if not np.isfinite(np.asarray(r["K"], np.float64)).all():
            bad.append(f"{e}: K not finite")
        elif len(r["w2c"]) != n or not np.isfinite(np.asarray(r["w2c"], np.float64)).all():
            bad.append(f"{e}: {len(r['w2c'])} w2c for {n} frames (or not finite)")
        elif len(r["frame_index"]) != n:
            bad.append(f"{e}: {len(r['frame_index'])} frame_index entries for {n} frames")
    return f.record(len(ok), bad)


def check_frame_counts(table: str, per_episode: dict[str, int], n_frames: dict[str, int]) -> Finding:
    """Rows (frames table) or list lengths (tracks.xyz) per episode equal the episode's n_frames."""
    f = Finding(f"{table}: frame counts match n_frames")
    bad = [f"{_eid(e)}: {k} for n_frames {n_frames.get(e)}" for e, k in sorted(per_episode.items()) if n_frames.get(e) != k]
    return f.record(len(per_episode), bad)


def check_track_lengths(tracks: pa.Table, n_frames: dict[str, int]) -> Finding:
    """tracks.xyz and tracks.visible have one entry per stored frame."""
    f = Finding("tracks: xyz/visible cover n_frames")
    nx = pc.list_value_length(tracks["xyz"]).to_numpy(zero_copy_only=False)
    nv = pc.list_value_length(tracks["visible"]).to_numpy(zero_copy_only=False)
    eids, tids = tracks["episode_id"].to_pylist(), tracks["track_id"].to_pylist()
    bad = [f"{_eid(eids[i])} track {tids[i]}: {nx[i]} xyz, {nv[i]} visible for {n_frames.get(eids[i])} frames"
           for i in range(tracks.num_rows) if not nx[i] == nv[i] == n_frames.get(eids[i])]
    return f.record(tracks.num_rows, bad)


def project_px(xyz: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """World points (n, 3) through per-point cameras K (3, 3), w2c (n, 4, 4) -> pixels (n, 2)."""
    cam = np.einsum("nij,nj->ni", w2c[:, :3, :3], xyz) + w2c[:, :3, 3]
    pix = cam @ K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return pix[:, :2] / pix[:, 2:3]


def check_reprojection(pairs: list[dict], tracks_xyz: dict[tuple[str, int], np.ndarray], cameras: dict[str, tuple]) -> Finding:
    """keypoints_uv of (episode, frame t, track) == tracks.xyz[t] through K, w2c[t], within 0.5 px.

    pairs: [{episode_id, frame, track_id, uv}]; tracks_xyz: (episode, track) -> (T, 3);
    cameras: episode -> (K (3, 3), w2c (T, 4, 4)).
    """
    f = Finding(f"samples: keypoints = tracks.xyz through the camera (<= {MAX_REPROJECTION_PX} px)")
    bad = []
    for p in pairs:
        e, t = p["episode_id"], p["frame"]
        xyz = tracks_xyz.get((e, p["track_id"]))
        if xyz is None or e not in cameras or t >= len(xyz) or t >= len(cameras[e][1]):
            bad.append(f"{_eid(e)} frame {t} track {p['track_id']}: no such track/frame/camera")
            continue
        K, w2c = cameras[e]
        uv = project_px(xyz[t][None], K, w2c[t][None])[0]
        err = float(np.hypot(*(uv - np.asarray(p["uv"]))))
        if not err <= MAX_REPROJECTION_PX:
            bad.append(f"{_eid(e)} frame {t} track {p['track_id']}: {err:.2f} px off")
    return f.record(len(pairs), bad)


def check_caption_coverage(sample_frames: dict[str, np.ndarray], spans: dict[str, list[tuple[int, int]]]) -> Finding:
    """Each sample frame of an episode lies inside some caption span [start_frame, end_frame]."""
    f = Finding("captions: cover every sample frame")
    bad, checked = [], 0
    for e, frames in sorted(sample_frames.items()):
        frames = np.asarray(frames)
        covered = np.zeros(len(frames), bool)
        for a, b in spans.get(e, []):
            covered |= (frames >= a) & (frames <= b)
        checked += len(frames)
        bad += [f"{_eid(e)} frame {t}: no caption" for t in frames[~covered]]
    return f.record(checked, bad)


def check_demonstration_steps(steps: pa.Table, n_frames: dict[str, int]) -> Finding:
    """Per episode: steps 0..S-1 once each (a second ingest must not add them again), one state and one action
    length, and every stored frame it names inside the episode, once.

    steps: episode_id, frame_index, frame, state_len, action_len (one row per demonstrations row).
    """
    f = Finding("demonstrations: steps 0..S-1 once, one state/action length, frames inside the episode")
    eids = np.asarray(steps["episode_id"].to_pylist(), dtype=str)
    cols = {c: pc.fill_null(steps[c], -1).to_numpy() for c in ("frame_index", "frame", "state_len", "action_len")}
    order = np.lexsort((cols["frame_index"], eids))
    eids, cols = eids[order], {c: v[order] for c, v in cols.items()}
    starts = np.flatnonzero(np.r_[True, eids[1:] != eids[:-1]]) if len(eids) else np.zeros(0, np.int64)
    bad = []
    for a, b in zip(starts, [*starts[1:], len(eids)]):
        e, step, frame = eids[a], cols["frame_index"][a:b], cols["frame"][a:b]
        frame = frame[frame >= 0]
        if not np.array_equal(step, np.arange(b - a)):
            bad.append(f"{_eid(e)}: {b - a} rows for steps {step.min()}..{step.max()} ({len(np.unique(step))} distinct)")
        elif len(np.unique(cols["state_len"][a:b])) > 1 or len(np.unique(cols["action_len"][a:b])) > 1:
            bad.append(f"{_eid(e)}: state or action lengths differ between steps")
        elif len(frame) and (frame.max() >= n_frames.get(e, 0) or len(np.unique(frame)) < len(frame)):
            bad.append(f"{_eid(e)}: stored frames {frame.min()}..{frame.max()} for n_frames {n_frames.get(e)} (or repeated)")
    return f.record(len(starts), bad)


def _demonstration_steps(root: str) -> pa.Table | None:
    """The columns check_demonstration_steps reads, list values left out; None without the table."""
    if open_table(root, "demonstrations") is None:
        return None
    parts = [
        pa.table({
            "episode_id": b["episode_id"], "frame_index": b["frame_index"], "frame": b["frame"],
            "state_len": pc.list_value_length(b["state"]), "action_len": pc.list_value_length(b["action"]),
        })
        for b in _batches(root, "demonstrations", ["episode_id", "frame_index", "frame", "state", "action"])
    ]
    return pa.concat_tables(parts) if parts else None


def _cameras(episodes: pa.Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for r in episodes.select(["episode_id", "status", "K", "w2c"]).to_pylist():
        if r["status"] == "ok" and r["K"] is not None and r["w2c"]:
            K = np.asarray(r["K"], np.float64).reshape(3, 3)
            out[r["episode_id"]] = (K, np.asarray(r["w2c"], np.float64).reshape(-1, 4, 4))
    return out


def _batches(root: str, table: str, columns: list[str]):
    ds = open_table(root, table)
    if ds is None:
        return
    for b in ds.to_batches(columns=columns, batch_size=BATCH_ROWS):
        yield pa.Table.from_batches([b])


def _pick_pairs(samples: pa.Table, n: int, rng: np.random.Generator) -> list[dict]:
    """Up to n random (episode, frame, track, uv) keypoints of a samples batch."""
    eids, frames, _ = _keypoint_frame(samples)
    if len(eids) == 0:
        return []
    uv = leaf_values(samples["keypoints_uv"]).reshape(-1, 2)
    tid = leaf_values(samples["track_id"])
    pick = rng.choice(len(eids), size=min(n, len(eids)), replace=False)
    return [{"episode_id": eids[i], "frame": int(frames[i]), "track_id": int(tid[i]), "uv": uv[i]} for i in pick]


def _merge(findings: dict[str, Finding], new: Finding) -> None:
    if new.check in findings:
        findings[new.check].merge(new)
    else:
        findings[new.check] = new


def check_dataset(root: str, pairs: int = 256, seed: int = 0) -> list[Finding]:
    """Run every check over the dataset at `root`; `pairs` keypoints are reprojected."""
    eps_ds = open_table(root, "episodes")
    if eps_ds is None and not RunManifest.pending(root) and all(open_table(root, n) is None for n in S.TABLES):
        return [Finding("episodes: table exists").record(1, [f"{root} has no episodes table"])]
    episodes = eps_ds.to_table() if eps_ds is not None else S.EPISODES.empty_table()  # rows elsewhere are orphans
    status = dict(zip(episodes["episode_id"].to_pylist(), episodes["status"].to_pylist()))
    n_frames = dict(zip(episodes["episode_id"].to_pylist(), episodes["n_frames"].to_pylist()))
    sizes = {e: (w, h) for e, w, h in zip(*(episodes[c].to_pylist() for c in ("episode_id", "width", "height")))}
    findings: dict[str, Finding] = {}
    _merge(findings, check_pending_runs([m.tag for m in RunManifest.pending(root)]))
    _merge(findings, check_stale_files(stale_data_files(root)))
    _merge(findings, check_unique_episodes(episodes["episode_id"].to_pylist()))
    present: dict[str, set[str]] = {}
    for name in S.TABLES:
        ds = eps_ds if name == "episodes" else open_table(root, name)
        if ds is not None:
            _merge(findings, check_schema(name, ds.schema))
    _merge(findings, check_episode_cameras(episodes))

    rng = np.random.default_rng(seed)
    candidates: list[dict] = []
    sample_frames: dict[str, list[int]] = {}
    sample_ids: set[str] = set()
    for batch in _batches(root, "samples", ["episode_id", "frame", "keypoints_uv", "track_id", "future", "future_valid",
                                            "history", "history_valid", "cluster_id"]):
        for check in (check_sample_lists(batch), check_keypoints_in_image(batch, sizes), check_sample_values(batch)):
            _merge(findings, check)
        candidates += _pick_pairs(batch, pairs, rng)
        for e, t in zip(batch["episode_id"].to_pylist(), batch["frame"].to_pylist()):
            sample_frames.setdefault(e, []).append(t)
            sample_ids.add(e)
    present["samples"] = sample_ids
    if sample_ids:
        _merge(findings, check_references("samples", sorted(sample_ids), status, ("ok",)))
    keep = rng.choice(len(candidates), min(pairs, len(candidates)), replace=False) if candidates else []
    picked = [candidates[i] for i in sorted(keep)]  # `pairs` keypoints drawn from the per-batch candidates

    wanted = {(p["episode_id"], p["track_id"]) for p in picked}
    tracks_xyz: dict[tuple[str, int], np.ndarray] = {}
    track_ids: set[str] = set()
    for batch in _batches(root, "tracks", ["episode_id", "track_id", "xyz", "visible"]):
        _merge(findings, check_track_lengths(batch, n_frames))
        eids, tids = batch["episode_id"].to_pylist(), batch["track_id"].to_pylist()
        track_ids.update(eids)
        for i, key in enumerate(zip(eids, tids)):
            if key in wanted:
                tracks_xyz[key] = np.asarray(batch["xyz"][i].as_py(), np.float64).reshape(-1, 3)
    present["tracks"] = track_ids
    if track_ids:
        _merge(findings, check_references("tracks", sorted(track_ids), status, ("ok", "rejected")))
    if picked:
        _merge(findings, check_reprojection(picked, tracks_xyz, _cameras(episodes)))

    frame_rows: dict[str, int] = {}
    for batch in _batches(root, "frames", ["episode_id"]):
        for e in batch["episode_id"].to_pylist():
            frame_rows[e] = frame_rows.get(e, 0) + 1
    present["frames"] = set(frame_rows)
    if frame_rows:
        _merge(findings, check_references("frames", sorted(frame_rows), status, ("ok", "rejected")))
        _merge(findings, check_frame_counts("frames", frame_rows, n_frames))

    caps = open_table(root, "captions")
    if caps is not None:
        c = caps.to_table(columns=["episode_id", "start_frame", "end_frame"])
        spans: dict[str, list[tuple[int, int]]] = {}
        for e, a, b in zip(*(c[k].to_pylist() for k in ("episode_id", "start_frame", "end_frame"))):
            spans.setdefault(e, []).append((a, b))
        present["captions"] = set(spans)
        _merge(findings, check_references("captions", sorted(spans), status, ("ok",)))
        ok_frames = {e: np.asarray(v) for e, v in sample_frames.items() if status.get(e) == "ok"}
        _merge(findings, check_caption_coverage(ok_frames, spans))
    demos = _demonstration_steps(root)
    if demos is not None:
        _merge(findings, check_references("demonstrations", demos["episode_id"].to_pylist(), status, ("ok", "rejected")))
        _merge(findings, check_demonstration_steps(demos, n_frames))
    rows = episodes.select(["episode_id", "status", "n_frames", "n_tracks", "n_samples", "config"]).to_pylist()
    _merge(findings, check_complete_episodes(rows, present))
    return list(findings.values())
