"""GPU-heavy runs: Ray tasks reserve GPUs, and runs queue on the global 'gpu' concurrency limit."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from flows.ingest import GPU_LIMIT, ingest
from tasks.config import get_preset, with_overrides
from tasks.run.ray_runner import NoGPUError, RayRunner, check_gpus


def test_gpu_config_on_a_cluster_without_gpus_is_a_clear_error(local_ray):
    check_gpus(0)
    with pytest.raises(NoGPUError, match="reserves 1 GPU per episode but the Ray cluster has 0"):
        check_gpus(1)
    with pytest.raises(NoGPUError, match="reserves 0.5 GPU per episode.*depth.gpus=0"):  # derived from the stages
        RayRunner().start(with_overrides(get_preset("sim"), {"depth.gpus": 0.5}))


def test_gpu_runs_wait_for_a_slot_of_the_global_limit(prefect_harness, sim_corpus, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(GPU_LIMIT, 1)
    one = sorted(p for p in sim_corpus.iterdir() if p.is_dir())[0]
    cfg = with_overrides(get_preset("sim"), {"depth.gpus": 1.0})
    held, released = threading.Event(), {}

    def other_gpu_run():
        with concurrency(GPU_LIMIT, occupy=1):
            held.set()
            time.sleep(4.0)
            released["at"] = dt.datetime.now(dt.timezone.utc)

    t = threading.Thread(target=other_gpu_run)
    t.start()
    assert held.wait(30)
    state = ingest(str(one), str(tmp_path / "traces"), cfg, runner="sequential", return_state=True)
    t.join()
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
        client.delete_global_concurrency_limit_by_name(GPU_LIMIT)
    started = min(a.created for a in arts if a.type == "progress")  # extraction began here
    assert started >= released["at"], (started, released["at"])
