"""A flow run whose process is SIGKILLed does not stay RUNNING: the next run on the dataset marks it CRASHED."""

from __future__ import annotations

import os
from pathlib import Path

from flows.ingest import ingest
from tasks.config import get_preset, with_overrides
from tests.faults import kill_at

CONFIG = with_overrides(get_preset("sim"), {"captions.backend": "off"})
CHILD = (
    "import sys; from flows.ingest import ingest; from tasks.config import get_preset, with_overrides; "
    "ingest(sys.argv[1], sys.argv[2], with_overrides(get_preset('sim'), {'captions.backend': 'off'}), runner='sequential')"
)


def flow_run_states(flow_name: str) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    return {str(r.id): r.state.type.value for r in runs}


def test_a_killed_ingest_run_is_marked_crashed_by_the_next_run(prefect_harness, sim_corpus, tmp_path):
    from prefect.settings import PREFECT_API_URL

    one = sorted(p for p in Path(sim_corpus).iterdir() if p.is_dir())[0]
    dataset, marker = tmp_path / "traces", tmp_path / "reached"
    before = set(flow_run_states("ingest"))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # the child reports to this test's server
    kill_at(CHILD, [str(one), str(dataset)], "stage:lift", marker, env)
    killed = [r for r, s in flow_run_states("ingest").items() if r not in before]
    assert len(killed) == 1 and flow_run_states("ingest")[killed[0]] == "RUNNING"  # what Prefect believes

    state = ingest(str(one), str(dataset), CONFIG, runner="sequential", return_state=True)
    assert state.is_completed()
    assert flow_run_states("ingest")[killed[0]] == "CRASHED"
    assert state.result().ok == 1  # and the episode the dead run was extracting is ingested now
