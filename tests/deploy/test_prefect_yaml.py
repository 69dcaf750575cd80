"""deploy/prefect.yaml: a deployment for every flow, parameters valid against the typed signatures."""

from __future__ import annotations

import importlib
import pkgutil

import flows
from flows import serve as S

# The project's flows (name -> entrypoint) and the deployments of deploy/prefect.yaml. Spelled out so
# that a discovery that finds nothing, or a yaml without deployments, fails instead of passing.
EXPECTED_FLOWS = {
    "ingest": "flows/ingest.py:ingest",
    "inbox-ingest": "flows/inbox.py:inbox_ingest",
    "pretrain": "flows/pretrain.py:pretrain",
    "finetune": "flows/finetune.py:finetune",
    "evaluate": "flows/evaluate.py:evaluate",
    "rollout": "flows/rollout.py:rollout",
}
EXPECTED_DEPLOYMENTS = {
    "ingest": "flows/ingest.py:ingest",
    "inbox": "flows/inbox.py:inbox_ingest",
    "pretrain": "flows/pretrain.py:pretrain",
    "finetune": "flows/finetune.py:finetune",
    "evaluate": "flows/evaluate.py:evaluate",
    "rollout": "flows/rollout.py:rollout",
}


def _project_flows():
    from prefect import Flow

    found = {}
    for mod in pkgutil.iter_modules(flows.__path__):
        if mod.name in ("cli", "serve"):
            continue
        module = importlib.import_module(f"flows.{mod.name}")
        for obj in vars(module).values():
            if isinstance(obj, Flow) and obj.fn.__module__ == module.__name__:
                found[obj.name] = f"flows/{mod.name}.py:{obj.fn.__name__}"
    return found


def test_every_flow_has_a_deployment():
    specs = S.load_specs()
    project_flows = _project_flows()
    assert project_flows == EXPECTED_FLOWS, "flows/ defines other flows than EXPECTED_FLOWS (update both lists)"
    assert {s["name"]: s["entrypoint"] for s in specs} == EXPECTED_DEPLOYMENTS
    entrypoints = {s["entrypoint"] for s in specs}
    missing = {name: ep for name, ep in project_flows.items() if ep not in entrypoints}
    assert not missing, f"flows without a deployment in deploy/prefect.yaml: {missing}"
    assert len({s["name"] for s in specs}) == len(specs)


def test_parameters_validate_and_the_form_has_descriptions():
    specs = S.load_specs()
    assert sorted(s["name"] for s in specs) == sorted(EXPECTED_DEPLOYMENTS)  # never an empty loop
    for spec in specs:
        flow = S.load_flow(spec["entrypoint"])
        assert spec.get("enforce_parameter_schema") is True
        flow.validate_parameters(spec["parameters"])  # raises on unknown names or wrong types
        assert spec.get("work_pool", {}).get("name") == "mu0-process"
    inbox = S.load_flow("flows/inbox.py:inbox_ingest").parameters
    assert "settle_seconds" in inbox.required or inbox.properties["settle_seconds"]["default"] == 5.0
    assert "unchanged" in inbox.properties["settle_seconds"]["description"]
    assert "config" in S.load_flow("flows/ingest.py:ingest").parameters.properties


def test_inbox_deployment_is_scheduled_and_limited_to_one_run():
    spec = {s["name"]: s for s in S.load_specs()}["inbox"]
    assert spec["schedules"][0]["interval"] > 0
    assert spec["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    deps = {d.name: d for d in S.build_deployments(S.load_specs(), {"runner": "sequential", "nope": 1})}
    assert deps["inbox"].concurrency_limit == 1 and len(deps["inbox"].schedules) == 1
    assert deps["ingest"].parameters["runner"] == "sequential" and "nope" not in deps["ingest"].parameters
    assert not deps["ingest"].schedules
