"""The `vlm` caption backend inside the stage: a tiny random SmolVLM never answers valid JSON, so each
chunk is asked twice, keeps its template caption, and the episode lands "ok" with the error recorded."""

from __future__ import annotations

import numpy as np
import pytest

from models.vlm_captioner import VLMCaptioner
from tasks.captions.caption import caption, chunk_views
from tasks.captions.motion import measure_chunk
from tasks.config import CaptionConfig, IngestConfig
from tests.models.tiny_vlm import save_tiny_vlm
from tests.tasks.captions.caption_episodes import make_episode


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory) -> str:
    return save_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm-stage"))


def test_vlm_backend_records_bad_json_and_keeps_the_episode(tiny_vlm_dir, tmp_path, monkeypatch):
    calls = []
    real = VLMCaptioner.generate

    def counted(self, images, text):  # spy on the real model call: count, check the inputs, pass through
        calls.append(len(images))
        return real(self, images, text)

    monkeypatch.setattr(VLMCaptioner, "generate", counted)
    ep = make_episode(tmp_path)
    vlm_cfg = IngestConfig(preset="sim", captions=CaptionConfig(backend="vlm", model=tiny_vlm_dir, max_new_tokens=8, image_size=64))
    out = caption(ep, vlm_cfg.captions)
    tpl = caption(ep, IngestConfig(preset="sim").captions)
    n_chunks = len(out.captions.level("motion"))
    assert n_chunks == 4 and len(calls) == 2 * n_chunks  # one retry per chunk
    assert set(calls) <= {3, 4}  # first/last (+ middle) frame, then the motion mask
    assert out.status == "ok" and out.errors["captions"].count("template caption kept") == n_chunks
    assert [c.instruction_1 for c in out.captions.items] == [c.instruction_1 for c in tpl.captions.items]


def test_chunk_views_mask_marks_the_dominant_cluster(tmp_path):
    ep = make_episode(tmp_path, n_background=50)
    m = measure_chunk(ep, 15, 50)
    images, views = chunk_views(ep, m)
    assert m.cluster == 3 and views == "first, middle and last frame" and len(images) == 4
    mask = images[-1][..., 0] > 0
    mid = (15 + 50) // 2
    u, v = np.round(ep.tracks_uv[:20, mid]).astype(int).T
    assert mask[v, u].all()  # every object keypoint is inside the mask
    ub, vb = np.round(ep.tracks_uv[20:, mid]).astype(int).T
    inside = (ub >= 0) & (ub < 128) & (vb >= 0) & (vb < 96)
    far = np.min(np.hypot(ub[:, None] - u[None], vb[:, None] - v[None]), axis=1) > 12 + 5 + 2
    assert (inside & far).sum() >= 5 and not mask[vb[inside & far], ub[inside & far]].any()  # background far away is not
