"""Meta-World corpus generation and exact ground truth for grading the trace pipeline.

MuJoCo picks its GL backend at import time, so headless EGL is selected here, before any
submodule imports mujoco (an explicit MUJOCO_GL from the environment wins).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

__all__ = ["GroundTruth", "generate_corpus", "load_ground_truth"]


def __getattr__(name: str):
    """Lazy re-exports, so that grading code need not import mujoco and PyAV."""
    if name == "generate_corpus":
        from tasks.sim.generate import generate_corpus

        return generate_corpus
    if name in ("GroundTruth", "load_ground_truth"):
        from tasks.sim import ground_truth

        return getattr(ground_truth, name)
    raise AttributeError(f"module 'tasks.sim' has no attribute {name!r}")
