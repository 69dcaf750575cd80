"""Extraction configs: frozen pydantic models (they render as Prefect UI forms) and named presets.

Numbers come from METHOD.md (TraceExtract stages 0-6) unless a comment says otherwise.
"""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DecodeConfig(_Frozen):
    target_fps: float | None = Field(None, gt=0, description="subsample to this rate; None keeps every frame")
    max_frames: int = Field(3000, gt=1, description="episodes longer than this are cut (stored frames)")
    max_width: int | None = Field(None, gt=16, description="downscale wider frames to this width")


class DepthConfig(_Frozen):
    backend: Literal["given", "depth-anything"] = Field("given", description="where metric depth comes from")
    model: str = Field(
        "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf",
        description="depth-anything: a hub id or a local directory saved with save_pretrained",
    )


class PoseConfig(_Frozen):
    backend: Literal["given", "open3d"] = Field("given", description="where camera poses come from")


class CaptionConfig(_Frozen):
    backend: Literal["template", "vlm", "off"] = Field(
        "template", description="template: built from the instruction and measured motion (offline); vlm: a model"
    )
    model: str = Field(
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct", description="vlm: a hub id or a local directory saved with save_pretrained"
    )


class KeypointConfig(_Frozen):
    backend: Literal["grid", "features", "grid+features"] = Field(
        "grid+features", description="grid gives coverage, good-features-to-track gives trackable corners"
    )
    grid_step_px: int = Field(12, ge=2, description="spacing of the uniform query grid")
    max_features: int = Field(600, ge=0, description="Shi-Tomasi corners per query frame")
    feature_quality: float = Field(0.01, gt=0, lt=1)
    feature_min_distance_px: float = Field(5.0, gt=0)
    min_corner_eig: float = Field(5e-5, ge=0, description="grid points need this much texture (cv2.cornerMinEigenVal)")
    reseed_every: int = Field(10, ge=1, description="every this many frames, seed new points where no track is visible")
    max_points: int = Field(2000, ge=1, description="cap on tracks per episode")


class TrackConfig(_Frozen):
    backend: Literal["lk"] = Field("lk", description="OpenCV pyramidal Lucas-Kanade, forward-backward checked")
    window_px: int = Field(11, ge=5, description="LK window side (larger windows drag points along with occluders)")
    pyramid_levels: int = Field(3, ge=0)
    fb_max_px: float = Field(1.0, gt=0, description="forward-backward error above which a step is not trusted")
    depth_jump_m: float = Field(0.02, gt=0, description="depth change vs the track's own 3D prediction that ends visibility")
    max_gap_frames: int = Field(30, ge=0, description="a lost track may be re-acquired within this many frames")
    reacquire_depth_m: float = Field(0.005, gt=0, description="a carried point is seen again when observed depth agrees this well")
    reacquire_ncc: float = Field(0.5, ge=-1, le=1, description="and when it looks like it did (NCC vs the last visible patch)")
    rigid_tol_m: float = Field(0.01, ge=0, description="a step disagreeing this much with its neighbours' rigid motion is not trusted (0: off)")
    flat_motion_m: float = Field(0.01, gt=0, description="textured tracks moving more than this make nearby flat points suspect")
    flat_radius_m: float = Field(0.1, gt=0, description="flat points this close to a moving textured track are dropped")
    min_visible_frames: int = Field(10, ge=1, description="tracks seen in fewer frames (query included) are dropped: too short to be a trace")
    min_texture: float = Field(1e-4, ge=0, description="LK minEigThreshold: steps on flat texture are not trusted")


class LiftConfig(_Frozen):
    edge_rel_jump: float = Field(0.08, gt=0, description="relative depth jump to a neighbour that marks a depth edge")
    edge_kernel_px: int = Field(3, ge=1, description="neighbourhood side for the edge test")
    max_depth_m: float = Field(20.0, gt=0, description="farther depth is treated as unknown (sky, far plane)")


class FilterConfig(_Frozen):
    motion_window: int = Field(64, ge=2, description="visible frames considered by the motion filter")
    motion_frac: float = Field(0.05, gt=0, description="moving if displacement exceeds this fraction of the diagonal")
    z_weight: float = Field(0.1, ge=0, description="weight of depth (m) against pixels in the motion test")
    min_track_coverage: float = Field(0.6, ge=0, le=1, description="reject episodes below this patch coverage")
    coverage_grid: int = Field(16, ge=1, description="coverage is measured on a grid of this many cells per side")


class RetargetConfig(_Frozen):
    step: float = Field(0.05, gt=0, description="arc-length resampling step in (u/W, v/H, z m) units")
    future_len: int = Field(128, ge=2)
    history_len: int = Field(32, ge=1)
    top_frac: float = Field(0.02, gt=0, le=1, description="robust speed = mean of this top fraction of segment lengths")
    min_future_steps: int = Field(2, ge=1, description="frames with fewer valid future steps are skipped")


class IngestConfig(_Frozen):
    preset: str = Field("generic", description="name of the preset these settings came from")
    corpus: str = Field("", description="corpus label stored with every episode")
    decode: DecodeConfig = DecodeConfig()
    depth: DepthConfig = DepthConfig()
    pose: PoseConfig = PoseConfig()
    keypoints: KeypointConfig = KeypointConfig()
    track: TrackConfig = TrackConfig()
    lift: LiftConfig = LiftConfig()
    filter: FilterConfig = FilterConfig()
    retarget: RetargetConfig = RetargetConfig()
    captions: CaptionConfig = CaptionConfig()
    jpeg_quality: int = Field(90, ge=10, le=100, description="quality of the stored frames")
    gpus_per_episode: float = Field(
        0.0, ge=0, description="GPUs each episode's Ray task reserves (model backends); > 0 also takes a slot "
        "of the global 'gpu' concurrency limit for the run"
    )

    def extraction_key(self) -> str:
        """The settings that change extracted data (part of the episode id); labels and resources do not."""
        return self.model_dump_json(exclude={"corpus", "gpus_per_episode"})


PRESETS: dict[str, IngestConfig] = {
    "sim": IngestConfig(preset="sim", corpus="sim"),
    "generic": IngestConfig(preset="generic", decode=DecodeConfig(target_fps=10.0)),
    "droid": IngestConfig(preset="droid", corpus="droid", decode=DecodeConfig(target_fps=5.0)),
    "agibot": IngestConfig(preset="agibot", corpus="agibot", decode=DecodeConfig(target_fps=5.0)),
    "egodex": IngestConfig(preset="egodex", corpus="egodex", decode=DecodeConfig(target_fps=10.0, max_width=640)),
}


def with_overrides(cfg: IngestConfig, overrides: dict[str, object]) -> IngestConfig:
    """`cfg` with dotted-path settings replaced ({"depth.backend": "depth-anything"}), validated again."""
    data = cfg.model_dump()
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return IngestConfig.model_validate(data)


class UnknownPresetError(KeyError):
    pass


def get_preset(name: str) -> IngestConfig:
    """The preset called `name`; an unknown name lists the known ones and the closest match."""
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownPresetError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}.{hint}") from None
