"""(a) A real server + serve process on loopback; trigger `ingest` through the REST API; rows land in Lance."""

from __future__ import annotations

import time

import pytest

from tests.deploy.platform import episode_ids, expected_ids

pytestmark = pytest.mark.slow


def test_ingest_deployment_through_the_api(platform, tmp_path):
    api = platform.api
    assert api.call("GET", "/health") is True
    dep = api.deployment("ingest", "ingest")
    # the UI form: typed parameters with defaults and descriptions
    schema = dep["parameter_openapi_schema"]
    assert {"source", "dataset", "config", "runner", "ray_address"} <= set(schema["properties"])
    assert schema["properties"]["runner"]["enum"] == ["ray", "sequential"]
    assert dep["parameters"]["source"] == str(platform.corpus) and dep["enforce_parameter_schema"] is True

    dataset = tmp_path / "traces-api"
    t0 = time.monotonic()
    run_id = api.run_deployment(dep["id"], {"dataset": str(dataset)})
    run = api.wait_run(run_id)
    took = time.monotonic() - t0
    assert run["state_type"] == "COMPLETED", run["state"]
    want = expected_ids(sorted(p for p in platform.corpus.iterdir() if p.is_dir()))
    assert len(want) == 2 and episode_ids(dataset) == want
    print(f"\n[api] startup {platform.startup_s:.1f} s; ingest run of 2 episodes: {took:.1f} s trigger->Completed")

    # a bad parameter is refused by the server (enforce_parameter_schema), before anything runs
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as err:
        api.run_deployment(dep["id"], {"runner": "threads"})
    assert err.value.code in (409, 422)
