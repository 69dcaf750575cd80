"""(b) The Prefect UI in headless Debian chromium: find the ingest deployment, run it, see Completed."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.deploy.platform import episode_ids, expected_ids

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def test_run_ingest_from_the_ui(platform):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("apt-get install -y chromium chromium-driver")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(platform.url + "/deployments", wait_until="networkidle")
            link = page.locator("a[href*='/deployments/deployment/']", has_text=re.compile(r"^\s*ingest\s*$"))
            link.first.wait_for(timeout=60_000)
            link.first.click()
            run_button = page.get_by_role("button", name="Run", exact=True)
            run_button.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "prefect-ui-ingest-deployment.png"))
            run_button.click()
            t0 = time.monotonic()
            with page.expect_response(lambda r: "create_flow_run" in r.url and r.request.method == "POST",
                                      timeout=60_000) as created:
                page.get_by_text("Quick run").click()
                # `source` has no default in the flow signature, so the UI shows the typed parameter form
                # (pre-filled from the deployment) in a modal; its Run button starts the run
                dialog = page.get_by_role("dialog")
                try:
                    dialog.get_by_text("source", exact=True).wait_for(timeout=10_000)
                    page.screenshot(path=str(ARTIFACTS / "prefect-ui-ingest-form.png"))
                    dialog.get_by_role("button", name="Run", exact=True).click()
                except sync_api.TimeoutError:
                    pass  # no modal: the quick run started directly
            assert created.value.status == 201
            run_id = created.value.json()["id"]
            page.goto(f"{platform.url}/runs/flow-run/{run_id}")
            run = platform.api.wait_run(run_id)
            assert run["state_type"] == "COMPLETED", run["state"]
            api_s = time.monotonic() - t0
            page.wait_for_function(
                "() => /Completed|Failed|Crashed/.test(document.querySelector('.state-badge')?.innerText || '')",
                polling=1000, timeout=60_000,
            )
            badge = page.locator(".state-badge").first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "prefect-ui-ingest-completed.png"), full_page=True)
            assert "Completed" in badge
            print(f"\n[ui] click -> API Completed {api_s:.1f} s, -> UI badge {time.monotonic() - t0:.1f} s; "
                  f"screenshots in {ARTIFACTS}")
        finally:
            browser.close()
    assert expected_ids(p for p in platform.corpus.iterdir() if p.is_dir()) <= episode_ids(platform.dataset)
