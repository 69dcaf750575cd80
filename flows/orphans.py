"""Flow runs whose process was killed are marked CRASHED instead of staying RUNNING forever.

Every ingest run holds a lease on its dataset for its whole life (storage.runs.run_lease); the kernel
releases it when the process dies, SIGKILL included. The next run on the same dataset (and `mu0 serve`
when it starts) finds the leases nobody holds and moves those runs to CRASHED in the Prefect database.
Prefect's own heartbeats (every 180 s at least 30) would need a server automation to act on them; the
lease answers at once and needs none.
"""

from __future__ import annotations

from storage.runs import dead_leases


def crash_orphaned_runs(dataset: str) -> list[str]:
    """Mark the flow runs whose process died while working on `dataset` as CRASHED; returns their ids."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    marked = []
    with get_client(sync_client=True) as client:
        for run_id in dead_leases(dataset):
            try:
                run = client.read_flow_run(run_id)
            except Exception:  # noqa: BLE001 - a run of another Prefect server, or deleted: nothing to mark here
                continue
            if run.state is not None and not run.state.is_final():
                message = f"its process died while ingesting into {dataset} (found by the next run on that dataset)"
                client.set_flow_run_state(run_id, Crashed(message=message), force=True)
                marked.append(run_id)
    return marked
