"""The viser scene of `mu0 view` in headless Debian chromium: WebGL on, the scene drawn, the slider live.

Screenshots go to $MU0_TEST_ARTIFACTS (default: test-artifacts/ under the repo root).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tasks.view.scene import PALETTE
from tasks.view.viser_server import serve_scene
from tests.deploy.platform import free_port
from tests.tasks.view.view_dataset import view_dataset

pytestmark = pytest.mark.slow  # about 12 s of browser on idle cores, 23 s measured on a loaded machine, + the dataset

ARTIFACTS = Path(os.environ.get("MU0_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # never --disable-software-rasterizer: it kills WebGL
VIEWPORT = {"width": 1280, "height": 800}
PANEL_X = 930  # viser's control panel sits right of this


def scene_pixels(png: bytes) -> np.ndarray:
    """The 3D canvas part of a screenshot (RGB), without the control panel and the notice corner."""
    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return img[160:, :PANEL_X]


def near(img: np.ndarray, color, tol: int = 40) -> int:
    return int((np.abs(img.astype(int) - np.asarray(color, int)).max(-1) <= tol).sum())


def distinct_colours(img: np.ndarray) -> int:
    return len(np.unique(img.reshape(-1, 3) // 4, axis=0))


def wait_until(cond, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def test_viser_scene_renders_in_headless_chromium(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("apt-get install -y chromium chromium-driver")
    root, eid = view_dataset(tmp_path_factory)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    viewer = serve_scene(root, eid, frame=5, host="127.0.0.1", port=free_port())
    try:
        assert viewer.frame == 5
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(viewer.url)
                # viser's notice appears only when WebGL runs (in software here); "WebGL unavailable" otherwise
                page.get_by_text("Software WebGL rendering detected").wait_for(timeout=60_000)
                page.locator(".mantine-Notification-root button").first.click()
                page.get_by_text(f"{viewer.scene.n_frames} frames").wait_for(timeout=30_000)
                time.sleep(4.0)  # about 4 fps in software: let the scene fade in
                shot = page.screenshot(path=str(ARTIFACTS / "viser-scene-frame5.png"))
                canvas = scene_pixels(shot)
                # the frame's point cloud and image: many colours; the moving traces: their vivid entity colour
                assert distinct_colours(canvas) > 300, distinct_colours(canvas)
                moving = PALETTE[(int(viewer.scene.cluster_id[viewer.scene.is_moving][0]) + 1) % len(PALETTE)]
                assert near(canvas, moving) > 200, near(canvas, moving)
                assert (canvas.min(-1) < 200).mean() > 0.05  # not a blank white page

                # the GUI slider drives the server: type a frame into its number box
                box = page.locator("input.mantine-NumberInput-input, input[type='number']").first
                box.fill("20")
                box.press("Enter")
                assert wait_until(lambda: viewer.frame == 20), f"slider did not reach the server (frame {viewer.frame})"
                time.sleep(3.0)
                after = scene_pixels(page.screenshot(path=str(ARTIFACTS / "viser-scene-frame20.png")))
                assert np.abs(after.astype(int) - canvas.astype(int)).max(-1).astype(bool).mean() > 0.002
            finally:
                browser.close()
    finally:
        viewer.stop()
    print(f"\n[viser] browser part {time.monotonic() - t0:.1f} s; screenshots in {ARTIFACTS}")
