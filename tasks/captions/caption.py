"""Stage 7: motion segmentation and hierarchical captions (docs/method.md#stage-7-segmentation-and-captions).

Chunks come from the acceleration of moving keypoints (tasks/captions/segment.py); each chunk gets a
"motion" caption, adjacent pairs and triples a "subtask" caption, the episode a "task" caption
(tasks/captions/merge.py); every instruction_1 is embedded with MiniLM in one batched call.

Backends: `template` (offline, tasks/captions/template.py), `vlm` (models/vlm_captioner.py) and
`off`. With `vlm`, a chunk whose reply is still not valid JSON after the retry keeps its template
caption, and the reason is recorded in `ep.errors["captions"]`; the episode stays "ok" (a missing
sentence is no reason to drop its traces).
"""

from __future__ import annotations

import cv2
import numpy as np

from tasks.captions.merge import build_hierarchy
from tasks.captions.motion import ChunkMotion, load_actions, measure_chunk
from tasks.captions.records import Caption, Captions
from tasks.captions.template import EpisodeText, chunk_texts
from tasks.config import CaptionConfig, IngestConfig
from tasks.captions.segment import segment_episode
from tasks.stage import Resources, Stage
from tasks.types import Episode

# docs/method.md#stage-7-segmentation-and-captions: disks of radius 12 around the dominant cluster's
# keypoints, dilated by 5
MASK_RADIUS_PX = 12
MASK_DILATE_PX = 5


def caption(ep: Episode, ccfg: CaptionConfig) -> Episode:
    """Fill `ep.captions` (and `errors["captions"]` for VLM chunks that fell back to the template)."""
    if ccfg.backend == "off" or ep.n_frames == 0:
        return ep
    text = EpisodeText.of(ep.meta, ep.source.preset)
    actions = load_actions(ep)
    motions = [measure_chunk(ep, a, b, actions) for a, b in segment_episode(ep, ccfg)]
    motion = [_template_caption(i, m, text) for i, m in enumerate(motions)]
    errors = dict(ep.errors)
    if ccfg.backend == "vlm":
        motion, failures = _vlm_captions(ep, ccfg, motions, motion, text)
        if failures:
            errors["captions"] = "; ".join(failures)
    items = build_hierarchy(motion, text, ep.n_frames)
    return ep.replace(captions=Captions(tuple(items), embed([c.instruction_1 for c in items])), errors=errors)


def embed(texts: list[str]) -> np.ndarray:
    from models.text_embedder import embed_texts  # why here: the ~4 s model load only when captions run

    return embed_texts(texts)


def _template_caption(i: int, m: ChunkMotion, text: EpisodeText) -> Caption:
    i1, i2, i3, skills = chunk_texts(m, text)
    return Caption(i, "motion", m.start, m.end, i1, i2, i3, tuple(skills), text.embodiment)


def motion_mask(ep: Episode, m: ChunkMotion, frame: int) -> np.ndarray:
    """(H, W, 3) uint8 white disks on the dominant cluster's visible moving keypoints at `frame`."""
    W, H = ep.image_size
    mask = np.zeros((H, W), np.uint8)
    if m.cluster is not None and ep.tracks_uv is not None and ep.is_moving is not None:
        sel = ep.is_moving & ep.visible[:, frame] & (np.asarray(ep.cluster_id) == m.cluster)
        for u, v in np.round(ep.tracks_uv[sel, frame]).astype(int):
            cv2.circle(mask, (int(u), int(v)), MASK_RADIUS_PX, 255, -1)
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MASK_DILATE_PX + 1,) * 2))
    return np.repeat(mask[..., None], 3, -1)


def chunk_views(ep: Episode, m: ChunkMotion) -> tuple[list[np.ndarray], str]:
    """First and last frame, the middle one when the chunk is >= 30 frames and moved, then the mask."""
    mid = (m.start + m.end) // 2
    idx = [m.start, mid, m.end] if (m.end - m.start + 1 >= 30 and m.moved) else [m.start, m.end]
    views = "first, middle and last frame" if len(idx) == 3 else "first and last frame"
    return [ep.frames[i] for i in idx] + [motion_mask(ep, m, mid)], views


def _vlm_captions(
    ep: Episode, ccfg: CaptionConfig, motions: list[ChunkMotion], fallback: list[Caption], text: EpisodeText
) -> tuple[list[Caption], list[str]]:
    from models.vlm_captioner import CaptionReplyError, load_captioner

    vlm = load_captioner(ccfg.model, ccfg.max_new_tokens, ccfg.image_size)
    out, failures = [], []
    for m, tpl in zip(motions, fallback):
        images, views = chunk_views(ep, m)
        context = f"The video's task: {text.instruction or 'unknown'}. The actor is: {text.embodiment}."
        try:
            j = vlm.caption(images, context, views)
        except CaptionReplyError as exc:
            failures.append(f"chunk {m.start}-{m.end}: {exc} (template caption kept)")
            out.append(tpl)
            continue
        out.append(Caption(tpl.caption_id, "motion", m.start, m.end, j.instruction_1, j.instruction_2,
                           j.instruction_3, tuple(j.skill_labels), text.embodiment))
    return out, failures


class Captioning(Stage[CaptionConfig]):
    """Stage 7 (docs/method.md#stage-7-segmentation-and-captions): motion chunks, hierarchical captions, embeddings."""

    name = "captions"

    def settings(self, cfg: IngestConfig) -> CaptionConfig:
        return cfg.captions

    def warm(self, settings: CaptionConfig) -> None:
        if settings.backend != "off":
            from models.text_embedder import load_embedder

            load_embedder()

    def resources(self, settings: CaptionConfig) -> Resources:
        return Resources(gpus=settings.gpus)

    def run(self, ep: Episode, settings: CaptionConfig) -> Episode:
        return caption(ep, settings)
