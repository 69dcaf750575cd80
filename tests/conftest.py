"""Shared fixtures: an isolated Prefect, a local 2-CPU Ray, and small simulated corpora."""

from __future__ import annotations

import tempfile

from flows.environment import apply_defaults

_PREFECT_HOME = tempfile.mkdtemp(prefix="mu0-prefect-")
apply_defaults({"PREFECT_HOME": _PREFECT_HOME, "PREFECT_LOGGING_LEVEL": "WARNING"}, override=True)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    # 30 s by default: on two busy cores the server has taken longer to start (CI's slow suite errored on it)
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def local_ray():
    import ray

    from tasks.run.ray_runner import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def sim_corpus(tmp_path_factory):
    """Three short static-camera Meta-World episodes with ground truth."""
    from tasks.sim.generate import generate_corpus

    out = tmp_path_factory.mktemp("sim")
    generate_corpus(out, 3, ["pick-place", "drawer-open", "button-press"], camera="static", max_steps=45, seed=0)
    return out
