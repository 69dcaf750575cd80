"""(c) The scheduled inbox deployment: two episodes dropped -> exactly two new after the next run, none after."""

from __future__ import annotations

import os
import time

import pytest

from tests.deploy.platform import episode_ids, expected_ids, parse_time, utcnow

pytestmark = pytest.mark.slow


def _next_completed(api, dep_id, after, timeout):
    """The first run of the deployment that started after `after` and reached a terminal state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in api.runs_of(dep_id):
            start = parse_time(run["start_time"])
            if start and start > after and run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
        time.sleep(1.0)
    raise TimeoutError(f"no inbox run started after {after} finished within {timeout} s")


def test_scheduled_inbox_ingests_new_episodes_once(platform, tmp_path):
    from tasks.sim.generate import generate_corpus

    api = platform.api
    dep = api.deployment("inbox-ingest", "inbox")
    assert [s["schedule"]["interval"] for s in dep["schedules"]] == [platform.interval]
    assert dep["global_concurrency_limit"]["limit"] == 1
    assert dep["parameters"]["inbox"] == str(platform.inbox)

    # staged outside, then renamed in: how writers should deliver (the readiness check covers the rest)
    staged = generate_corpus(tmp_path / "staging", 2, ["reach", "drawer-open"], camera="static", max_steps=30, seed=300)
    before = episode_ids(platform.dataset)
    dropped = []
    for p in staged:
        os.rename(p, platform.inbox / p.name)
        dropped.append(platform.inbox / p.name)
    t_drop = utcnow()
    want = expected_ids(dropped)
    assert not want & before

    first = _next_completed(api, dep["id"], t_drop, timeout=240)
    assert first["state_type"] == "COMPLETED", first["state"]
    after_first = episode_ids(platform.dataset)
    assert after_first - before == want  # exactly the two new episodes

    second = _next_completed(api, dep["id"], parse_time(first["end_time"]), timeout=120)
    assert second["state_type"] == "COMPLETED", second["state"]
    assert episode_ids(platform.dataset) == after_first  # nothing new the run after

    # concurrency limit 1: no two runs of the deployment overlapped
    spans = sorted((parse_time(r["start_time"]), parse_time(r["end_time"])) for r in api.runs_of(dep["id"])
                   if r["start_time"] and r["end_time"])
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    secs = (parse_time(first["end_time"]) - t_drop).total_seconds()
    print(f"\n[inbox] drop -> ingested: {secs:.1f} s; run durations: "
          f"{[round(r['total_run_time'], 1) for r in (first, second)]} s; {len(spans)} runs so far")
