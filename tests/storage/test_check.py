"""storage.check: a fresh ingest passes every check; each deliberate corruption is caught by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

from storage import check as C
from storage import schema as S
from storage.dataset import open_table
from tests.storage.datasets import edit_leaf, ingested_copy, overwrite, replace


@pytest.fixture(scope="module")
def fresh(sim_corpus, tmp_path_factory):
    return ingested_copy(sim_corpus, tmp_path_factory)


@pytest.fixture
def copy(fresh, tmp_path):
    """A private copy of the fresh dataset to corrupt."""
    root = str(tmp_path / "traces")
    shutil.copytree(fresh, root)
    return root


def failing(root: str, **kw) -> dict[str, C.Finding]:
    return {f.check: f for f in C.check_dataset(root, **kw) if not f.ok}


def test_a_fresh_ingest_passes_every_check(fresh):
    findings = C.check_dataset(fresh)
    assert all(f.ok for f in findings), [(f.check, f.examples) for f in findings if not f.ok]
    checked = {f.check: f.checked for f in findings}
    assert checked["samples: keypoints inside the image"] > 1000
    assert checked[f"samples: keypoints = tracks.xyz through the camera (<= {C.MAX_REPROJECTION_PX} px)"] == 256
    assert {"episodes", "tracks", "samples", "frames"} <= {c.split(":")[0] for c in checked if "schema" in c}
    assert checked["frames: frame counts match n_frames"] == 3


def test_a_keypoint_moved_outside_the_image(copy):
    t = open_table(copy, "samples").to_table()

    def push_out(uv):
        uv[0] = 5000.0  # u of the first keypoint of the first row
    overwrite(copy, "samples", replace(t, "keypoints_uv", edit_leaf(t["keypoints_uv"], 2, push_out)))
    bad = failing(copy)
    f = bad["samples: keypoints inside the image"]
    assert f.failed == 1 and "uv (5000.0," in f.examples[0] and "outside 320x240" in f.examples[0]


def test_a_nan_under_a_valid_mask(copy):
    t = open_table(copy, "samples").to_table()
    valid = t["future_valid"].combine_chunks().values.values.to_numpy(zero_copy_only=False)
    where = int(np.flatnonzero(valid)[10])  # the 11th valid (keypoint, step)

    def poison(xyz):
        xyz[3 * where + 2] = np.nan  # its z
    overwrite(copy, "samples", replace(t, "future", edit_leaf(t["future"], 3, poison)))
    bad = failing(copy)
    assert list(bad) == ["samples: finite values where valid"] and bad["samples: finite values where valid"].failed == 1


def test_a_moved_camera_breaks_reprojection(copy):
    rows = open_table(copy, "episodes").to_table().to_pylist()
    w2c = np.asarray(rows[0]["w2c"]).reshape(-1, 4, 4)
    w2c[:, 0, 3] += 0.05  # 5 cm sideways: tens of pixels
    rows[0]["w2c"] = w2c.reshape(-1, 16).tolist()
    overwrite(copy, "episodes", pa.Table.from_pylist(rows, schema=S.EPISODES))
    bad = failing(copy, pairs=400)
    f = bad[f"samples: keypoints = tracks.xyz through the camera (<= {C.MAX_REPROJECTION_PX} px)"]
    assert 0 < f.failed < 400 and "px off" in f.examples[0] and rows[0]["episode_id"][:12] in f.examples[0]
    assert list(bad) == [f.check]


def test_orphans_missing_frames_and_uncaptioned_frames(copy):
    eps = open_table(copy, "episodes").to_table().to_pylist()
    first = eps[0]["episode_id"]
    open_table(copy, "frames").delete(f"episode_id = '{first}' AND frame = 3")
    caps = open_table(copy, "captions")
    caps.delete(f"episode_id = '{first}'")
    rows = [dict(eps[1], status="failed", errors=json.dumps({"track": "boom"}))] + [eps[0], eps[2]]
    overwrite(copy, "episodes", pa.Table.from_pylist(rows, schema=S.EPISODES))
    bad = failing(copy)
    assert bad["frames: frame counts match n_frames"].examples == [f"{first[:12]}: 44 for n_frames 45"]
    assert bad["samples: episodes exist with status ok"].examples == [f"{eps[1]['episode_id'][:12]}: failed"]
    assert bad["tracks: episodes exist with status ok/rejected"].failed == 1
    assert bad["captions: cover every sample frame"].failed == open_table(copy, "samples").count_rows(f"episode_id = '{first}'")


def test_schema_and_shape_checks_are_pure():
    wrong = S.CAPTIONS.set(S.CAPTIONS.get_field_index("embedding"), pa.field("embedding", pa.list_(pa.float32(), 128)))
    f = C.check_schema("captions", wrong.append(pa.field("colour", pa.string())))
    assert f.failed == 2 and any("embedding" in e for e in f.examples) and "unexpected column colour" in f.examples
    no_meta = S.samples_schema(16, 8).remove_metadata()
    assert C.check_schema("samples", no_meta).examples == ["schema metadata lacks future_len/history_len"]
    assert C.check_schema("samples", S.samples_schema(16, 8)).ok  # L and Lh come from the metadata
    short = pa.Table.from_pylist(
        [{"episode_id": "e", "frame": 0, "keypoints_uv": [[1, 1], [2, 2]], "track_id": [0], "future": [], "future_valid": [],
          "history": [], "history_valid": [], "cluster_id": [0, 0], "caption_ids": []}],
        schema=S.samples_schema(4, 2),
    )
    assert C.check_sample_lists(short).failed == 1
    cover = C.check_caption_coverage({"e": np.array([0, 5, 9, 10])}, {"e": [(0, 5), (6, 9)]})
    assert (cover.checked, cover.failed, cover.examples) == (4, 1, ["e frame 10: no caption"])
