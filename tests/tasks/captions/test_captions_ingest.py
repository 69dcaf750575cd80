"""Captions through the real ingest (sequential runner) of a small Meta-World corpus, and semantic
search over the stored MiniLM embeddings."""

from __future__ import annotations

from models.text_embedder import embed_texts
from storage.dataset import open_table
from tasks.config import get_preset
from tasks.run.discover import discover
from tasks.run.episode import run_stages
from tasks.run.ingest import ingest


def test_ingest_writes_captions_covering_each_episode(sim_corpus, tmp_path):
    cfg = get_preset("sim")
    root = str(tmp_path / "traces")
    report = ingest(str(sim_corpus), root, cfg)
    assert report.ok == 3, report.failures
    caps = open_table(root, "captions").to_table().to_pylist()
    eps = {e["episode_id"]: e for e in open_table(root, "episodes").to_table().to_pylist()}
    for eid, e in eps.items():
        rows = [c for c in caps if c["episode_id"] == eid]
        task = [c for c in rows if c["level"] == "task"]
        motion = sorted((c for c in rows if c["level"] == "motion"), key=lambda c: c["start_frame"])
        assert len(task) == 1 and (task[0]["start_frame"], task[0]["end_frame"]) == (0, e["n_frames"] - 1)
        assert motion[0]["start_frame"] == 0 and motion[-1]["end_frame"] == e["n_frames"] - 1
        assert all(b["start_frame"] == a["end_frame"] + 1 for a, b in zip(motion, motion[1:]))
        assert len({c["caption_id"] for c in rows}) == len(rows)
        assert task[0]["instruction_2"].rstrip(".").lower() == e["instruction"].lower()
        assert all(c["embodiment"] == "robot_gripper" and c["skill_labels"] for c in rows)
    samples = open_table(root, "samples").to_table(columns=["episode_id", "frame", "caption_ids"]).to_pylist()
    assert samples and all(len(s["caption_ids"]) >= 2 for s in samples)  # its chunk + the task caption at least


def test_semantic_search_ranks_the_drawer_instruction_first(sim_corpus):
    cfg = get_preset("sim")
    drawer = next(s for s in discover(str(sim_corpus), cfg) if "drawer-open" in s.uri)
    ep = run_stages(drawer, cfg)
    assert ep.status == "ok", ep.errors
    emb = ep.captions.embeddings
    q = embed_texts(["open the drawer", "press the button"])
    best = (emb @ q.T).max(0)  # each query's best caption of the drawer episode
    assert best[0] > best[1] + 0.1, best
    assert all(float(e @ q[0]) > float(e @ q[1]) for e in emb[[c.level == "task" for c in ep.captions.items]])
