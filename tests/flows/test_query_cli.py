"""`mu0 query`, `mu0 datasets`, `mu0 check`: every option, on real data, with real exit codes."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage.dataset import open_table
from storage.writer import ensure_indexes
from tests.flows.output import text
from tests.storage.datasets import captions_table, edit_leaf, ingested_copy, overwrite, replace, write

runner = CliRunner()

SENTENCES = [
    ("ep-drawer", "task", 0, 20, "open the drawer", "the gripper pulls the drawer handle", ["pull", "grasp"]),
    ("ep-button", "task", 0, 20, "press the button", "the gripper pushes the red button down", ["press"]),
    ("ep-puck", "task", 0, 20, "pick up the puck and place it on the goal", "carry the puck", ["pick", "place", "grasp"]),
]


@pytest.fixture(scope="module")
def captions_ds(tmp_path_factory):
    """Three captions embedded with the real MiniLM, tagged, then one more caption at a later version."""
    from models.text_embedder import embed_texts

    root = str(tmp_path_factory.mktemp("cli") / "traces")
    write(root, "captions", captions_table(SENTENCES, embed_texts([s[4] for s in SENTENCES])), tag="v-one")
    later = [("ep-door", "task", 0, 9, "close the door", "swing the door shut", ["push"])]
    write(root, "captions", captions_table(later, embed_texts([later[0][4]]), first_id=10), tag="v-two")
    ensure_indexes(root)
    return root


@pytest.fixture(scope="module")
def real_ds(sim_corpus, tmp_path_factory):
    return ingested_copy(sim_corpus, tmp_path_factory)


def jsonl(res) -> list[dict]:
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def q(*args: str):
    return runner.invoke(app, ["query", *args])


def test_like_ranks_the_drawer_caption_first(captions_ds):
    rows = jsonl(q(captions_ds, "--like", "pull the drawer open", "--format", "jsonl", "--columns", "episode_id"))
    assert rows[0]["episode_id"] == "ep-drawer"
    assert rows[0]["_distance"] < rows[1]["_distance"] and len(rows) == 4  # all four captions, nearest first
    top = jsonl(q(captions_ds, "--like", "push the button", "--limit", "1", "--format", "jsonl"))
    assert [r["episode_id"] for r in top] == ["ep-button"] and len(top[0]["embedding"]) == 384


def test_text_skill_episode_where_and_columns(captions_ds):
    assert [r["episode_id"] for r in jsonl(q(captions_ds, "--text", "drawer", "--format", "jsonl"))] == ["ep-drawer"]
    rows = jsonl(q(captions_ds, "--skill", "grasp", "--format", "jsonl", "--columns", "episode_id,skill_labels"))
    assert sorted(r["episode_id"] for r in rows) == ["ep-drawer", "ep-puck"] and set(rows[0]) == {"episode_id", "skill_labels"}
    rows = jsonl(q(captions_ds, "--skill", "press", "--skill", "push", "--format", "jsonl"))
    assert sorted(r["episode_id"] for r in rows) == ["ep-button", "ep-door"]
    rows = jsonl(q(captions_ds, "--table", "captions", "--episode", "ep-puck", "--format", "jsonl"))
    assert [r["caption_id"] for r in rows] == [2]
    rows = jsonl(q(captions_ds, "--table", "captions", "--where", "caption_id >= 1", "--limit", "2", "--format", "jsonl"))
    assert len(rows) == 2 and all(r["caption_id"] >= 1 for r in rows)


def test_time_travel_by_version_and_tag(captions_ds):
    ids = lambda res: sorted(r["caption_id"] for r in jsonl(res))  # noqa: E731
    assert ids(q(captions_ds, "--table", "captions", "--format", "jsonl")) == [0, 1, 2, 10]
    assert ids(q(captions_ds, "--table", "captions", "--tag", "v-one", "--format", "jsonl")) == [0, 1, 2]
    assert ids(q(captions_ds, "--table", "captions", "--version", "1", "--format", "jsonl")) == [0, 1, 2]
    assert ids(q(captions_ds, "--table", "captions", "--tag", "v-two", "--format", "jsonl")) == [0, 1, 2, 10]


def test_table_view_truncates_lists_and_long_text(captions_ds):
    res = q(captions_ds, "--table", "captions", "--episode", "ep-puck")
    assert res.exit_code == 0, res.output
    assert "captions: 1 rows" in text(res) and "not shown: embedding" in text(res)
    res = q(captions_ds, "--table", "captions", "--columns", "instruction_2,embedding", "--where", "caption_id = 2")
    out = "".join(text(res).replace("│", " ").split())  # cells fold at 80 columns: compare without spaces
    assert "carrythepuck" in out and "(384)" in out and "…" in out  # the embedding shown as 3 of 384 values


def test_parquet_and_jsonl_files(captions_ds, tmp_path):
    out = tmp_path / "hits.parquet"
    res = q(captions_ds, "--text", "button", "--format", "parquet", "--out", str(out))
    assert res.exit_code == 0, res.output
    t = pq.read_table(out)
    assert t["episode_id"].to_pylist() == ["ep-button"] and "_score" in t.column_names
    out = tmp_path / "hits.jsonl"
    res = q(captions_ds, "--skill", "grasp", "--format", "jsonl", "--out", str(out))
    assert res.exit_code == 0 and "wrote 2 rows" in text(res)
    assert len(out.read_text().splitlines()) == 2


def test_samples_of_a_real_episode_as_valid_json(real_ds):
    eps = jsonl(q(real_ds, "--where", "status = 'ok'", "--columns", "episode_id,n_frames", "--format", "jsonl"))
    eid = eps[0]["episode_id"]
    rows = jsonl(q(real_ds, "--table", "samples", "--episode", eid, "--limit", "2", "--format", "jsonl"))
    assert [r["frame"] for r in rows] == [0, 1] and {r["episode_id"] for r in rows} == {eid}
    assert any(v is None for kp in rows[0]["future"] for step in kp for v in step)  # NaN -> null, still JSON
    res = q(real_ds, "--table", "frames", "--episode", eid, "--limit", "3")
    assert res.exit_code == 0 and "frames: 3 rows" in text(res) and "jpeg" not in text(res)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--table", "caption"], "unknown table 'caption'"),
        (["--where", "level === 'x'"], "sql parser error"),
        (["--tag", "nope"], "has no tag 'nope'"),
        (["--version", "42"], "has no version 42"),
        (["--version", "1", "--tag", "v-one"], "not both"),
        (["--format", "csv"], "--format must be table, jsonl or parquet"),
        (["--format", "parquet"], "needs --out"),
        (["--table", "episodes", "--text", "x"], "episodes.lance does not exist"),
    ],
)
def test_query_errors_are_one_line_and_nonzero(captions_ds, args, message):
    res = q(captions_ds, "--table", "captions", *args) if "--table" not in args else q(captions_ds, *args)
    assert res.exit_code == 2, res.output
    assert message in text(res) and "Traceback" not in res.output and ".rs:" not in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1


def test_datasets_lists_tables_versions_tags_and_indexes(real_ds, captions_ds, tmp_path):
    res = runner.invoke(app, ["datasets", captions_ds])
    assert res.exit_code == 0, res.output
    out = text(res).replace("│", " ")
    for expected in ("captions", "v-one@1", "v-two@2", "Inverted(instruction_1)", "LabelList(skill_labels)", "BTree(episode_id)"):
        assert expected in " ".join(out.split()), expected
    res = runner.invoke(app, ["datasets", real_ds])
    assert res.exit_code == 0 and all(t in text(res) for t in ("episodes", "tracks", "samples", "frames", "ingest-1@1"))
    res = runner.invoke(app, ["datasets", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "holds no tables" in text(res)


def test_check_passes_fresh_and_fails_corrupted(real_ds, sim_corpus, tmp_path_factory, tmp_path):
    res = runner.invoke(app, ["check", real_ds])
    assert res.exit_code == 0, res.output
    assert "checks passed" in text(res) and "FAIL" not in text(res)
    bad = ingested_copy(sim_corpus, tmp_path_factory)
    t = open_table(bad, "samples").to_table()

    def push_out(uv):
        uv[1] = -40.0  # v of the first keypoint: above the image
    overwrite(bad, "samples", replace(t, "keypoints_uv", edit_leaf(t["keypoints_uv"], 2, push_out)))
    res = runner.invoke(app, ["check", bad, "--pairs", "3", "--seed", "1"])
    assert res.exit_code == 1, res.output
    assert "FAIL samples: keypoints inside the image: 1 of" in text(res) and ", -40.0) outside 320x240" in text(res)
    res = runner.invoke(app, ["check", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "holds no tables" in text(res)


def test_check_pairs_option_sets_how_many_keypoints_are_reprojected(real_ds):
    from storage.check import check_dataset

    res = runner.invoke(app, ["check", real_ds, "--pairs", "7", "--seed", "3"])
    assert res.exit_code == 0, res.output
    [f] = [f for f in check_dataset(real_ds, pairs=7, seed=3) if "through the camera" in f.check]
    assert f.checked == 7
