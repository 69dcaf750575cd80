"""Extraction configs: frozen pydantic models (they render as Prefect UI forms) and named presets.

Numbers come from docs/method.md#traceextract (TraceExtract stages 0-6) unless a comment says otherwise.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DecodeConfig(_Frozen):
    target_fps: float | None = Field(None, gt=0, description="subsample to this rate; None keeps every frame")
    max_frames: int = Field(
        3000, gt=1, description="episodes longer than this are cut (stored frames; the row says so)"
    )
    max_width: int | None = Field(None, gt=16, description="downscale wider frames to this width")
    spill_mb: float = Field(
        256.0, ge=0, description="an episode whose stored frames take more than this (MiB) keeps its per-pixel arrays "
        "in files under spill_dir, read a block at a time (0: always)"
    )
    spill_dir: str = Field("", description="where spilled episodes' arrays go ('': the system temp directory); on "
                           "a Ray cluster of several nodes, storage every node mounts")


class DepthConfig(_Frozen):
    backend: Literal["given", "depth-anything"] = Field("given", description="where metric depth comes from")
    model: str = Field(
        "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf",
        description="depth-anything: a hub id or a local directory saved with save_pretrained (metric checkpoints only)",
    )
    input_size: int | None = Field(
        None, ge=14, description="depth-anything: input side in pixels (rounded to a multiple of 14, aspect kept); "
        "None: the checkpoint's own (518 for the released ones)"
    )
    batch_size: int = Field(8, ge=1, description="depth-anything: frames per forward pass")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="depth-anything: auto = cuda (bf16) when present")
    gpus: float = Field(
        0.0, ge=0, description="GPUs each episode's Ray task reserves for the depth model (fractions share a GPU; "
        "set it with depth-anything on GPU nodes); > 0 also takes a slot of the global 'gpu' concurrency limit"
    )
    scale_to_given: bool = Field(
        True, description="median-scale predicted depth to any depth.npy values given with the episode (partial depth)"
    )
    min_given_px: int = Field(
        500, ge=1, description="fewer valid given depth pixels than this count as nothing given (no scaling)"
    )
    fov_prior_deg: float = Field(
        60.0, gt=1, lt=179, description="horizontal field of view assumed when neither cameras.npz, meta.json nor the "
        "video's metadata give intrinsics; set it per corpus (phones ~65-70, action cams ~120)"
    )


class PoseConfig(_Frozen):
    """Stage 1 camera poses (docs/method.md#stage-1-depth-and-camera-poses): keyframe global pass, dense chunks
    anchored to it, never chained."""

    backend: Literal["given", "open3d"] = Field("given", description="where camera poses come from")
    keyframe_every: int = Field(
        5, ge=1, description="open3d: a keyframe (global-pass anchor) at least every this many frames"
    )
    keyframe_min_inlier_frac: float = Field(
        0.15, ge=0, le=1, description="a frame registering with fewer PnP inliers than this fraction of its keyframe's "
        "corners makes the last well-registered frame a keyframe (holds registration when the camera turns fast)"
    )
    chunk_keyframes: int = Field(4, ge=1, description="keyframes per dense chunk; each chunk is fitted to its anchors")
    keyframe_neighbours: int = Field(2, ge=1, description="each keyframe is registered to this many previous keyframes")
    keyframe_far_edges: int = Field(2, ge=0, description="plus this many older keyframes (2x farther each time) for loop closure")
    max_register_deg: float = Field(
        15.0, gt=0, description="keyframe pairs whose estimated relative rotation exceeds this are not registered "
        "(LK + PnP fails beyond about 12 degrees on the orbit sim; the attempt would only cost time)"
    )
    max_features: int = Field(400, ge=20, description="Shi-Tomasi corners (with stable depth) per keyframe")
    corner_quality: float = Field(0.0002, gt=0, lt=1, description="Shi-Tomasi quality level")
    corner_min_distance_px: float = Field(6.0, gt=0, description="spacing of keyframe corners")
    lk_window_px: int = Field(11, ge=5, description="LK window side when tracking keyframe corners into a frame")
    lk_levels: int = Field(3, ge=0, description="LK pyramid levels")
    fb_max_px: float = Field(1.0, gt=0, description="forward-backward LK error above which a correspondence is dropped")
    reprojection_px: float = Field(1.0, gt=0, description="PnP RANSAC inlier threshold")
    min_inliers: int = Field(25, ge=6, description="fewer PnP inliers: the registration failed")
    edge_rel_jump: float = Field(0.03, gt=0, description="features on a relative depth jump larger than this are not lifted")
    dense_refine: bool = Field(
        False, description="polish each sparse pose with open3d hybrid RGB-D odometry (ICP + photometric); "
        "on the orbit sim it was 3-5x slower and less accurate, hence off"
    )
    dense_width: int = Field(160, ge=16, description="image width at which the dense odometry runs")
    dense_max_change_m: float = Field(0.02, gt=0, description="a dense refinement moving the pose farther than this is discarded")
    anchor_outlier_sigma: float = Field(
        2.0, gt=0, description="anchor pairs with residual beyond this many sigma (sigma from the median residual) are rejected"
    )
    anchor_min_residual_m: float = Field(0.005, ge=0, description="residuals below this are never outliers (noise floor)")
    min_scale_baseline_m: float = Field(
        0.02, gt=0, description="Sim(3): a chunk's scale is measured only when its anchor cameras span this much"
    )
    max_scale_spread: float = Field(
        0.1, gt=0, description="predicted depth: (p90 - p10) / median of per-chunk scales above this flags metric_scale_ok=False"
    )
    max_lost_frac: float = Field(0.2, ge=0, le=1, description="fail the episode when more frames than this cannot be registered")


class CaptionConfig(_Frozen):
    """Stage 7 (docs/method.md#stage-7-segmentation-and-captions): motion segmentation, per-chunk captions,
    merges, MiniLM embeddings."""

    backend: Literal["template", "vlm", "off"] = Field(
        "template", description="template: built from the instruction and measured motion (offline); vlm: a model"
    )
    model: str = Field(
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct", description="vlm: a hub id or a local directory saved with save_pretrained"
    )
    min_chunk_len: int = Field(25, ge=2, description="shortest motion chunk (stored frames); also the minimum peak distance")
    max_chunk_len: int = Field(200, ge=2, description="longer chunks are split at their quietest frame (AgiBot: 300)")
    max_chunks: int = Field(6, ge=1, description="most motion chunks per episode (AgiBot: 3)")
    smooth_window: int = Field(11, ge=3, description="Savitzky-Golay window of the acceleration signal (odd)")
    smooth_order: int = Field(2, ge=1, description="Savitzky-Golay polynomial order")
    peak_rel: float = Field(0.4, gt=0, le=1, description="peak height above min and prominence, as a fraction of the range")
    z_weight: float = Field(0.1, ge=0, description="weight of depth (m) against pixels in the acceleration signal")
    visibility_margin: int = Field(5, ge=0, description="a keypoint counts at t only if seen throughout t +- this many frames")
    ego_min_keypoints: int = Field(300, ge=1, description="without camera poses: frames where this many keypoints move are ego-motion")
    ego_px_per_frame: float = Field(2.0, gt=0, description="image motion that counts a keypoint as moving in the ego-motion test")
    max_new_tokens: int = Field(256, ge=8, description="vlm: generation budget for the JSON reply")
    image_size: int = Field(384, ge=32, description="vlm: longest side of the frames given to the model")
    gpus: float = Field(0.0, ge=0, description="GPUs each episode's Ray task reserves for the caption model (vlm on GPU nodes; fractions share a GPU)")


class DinoConfig(_Frozen):
    """Stage 2 `dino` backend (docs/method.md#stage-2-keypoint-proposal; tasks/extract/dino_entities.py)."""

    model: str = Field(
        "facebook/dinov2-small", description="DINOv2 hub id or local save_pretrained directory (published: ViT-B/14)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto, cpu or cuda (bf16 on CUDA)")
    input_size: int = Field(224, ge=14, description="frames are resized to this square; 224 gives a 16×16 patch grid")
    batch_size: int = Field(8, ge=1, description="frames per DINOv2 forward pass")
    gpus: float = Field(0.0, ge=0, description="GPUs each DINOv2 actor reserves on Ray (fractions share a GPU)")
    every_k: int = Field(5, ge=1, description="one frame in every k is clustered and can be a query frame")
    merge_rounds: int = Field(11, ge=0, description="ToMe bipartite merging rounds per frame")
    merge_ratio: float = Field(0.25, gt=0, le=0.5, description="fraction of the tokens folded away per round")
    entities_per_frame: int | None = Field(
        None, ge=1, description="stop merging a frame at this many entities (None: the rounds alone decide)"
    )
    merge_min_cos: float = Field(
        -1.0, ge=-1, le=1, description="never merge tokens less similar than this (-1: off, as published)"
    )
    new_entity_cos: float = Field(
        0.2, ge=-1, le=1, description="a frame entity below this cosine to every running entity starts a new one"
    )
    points_per_entity: int = Field(48, ge=1, description="keypoints per entity, shared among frames by patch count")
    max_points: int = Field(2000, ge=1, description="cap on keypoints per call; entities share it equally")
    coverage_dilation: int = Field(1, ge=0, description="covered cells grow by this many cells (1: 3×3)")
    seed: int = Field(0, description="seeds k-means and the jitter")


class KeypointConfig(_Frozen):
    backend: Literal["grid", "features", "grid+features", "dino"] = Field(
        "grid+features", description="grid gives coverage, good-features-to-track gives trackable corners; "
        "dino: DINOv2 interaction entities (a GPU backend; `dino` settings)"
    )
    grid_step_px: int = Field(12, ge=2, description="spacing of the uniform query grid")
    max_features: int = Field(600, ge=0, description="Shi-Tomasi corners per query frame")
    feature_quality: float = Field(0.01, gt=0, lt=1)
    feature_min_distance_px: float = Field(5.0, gt=0)
    min_corner_eig: float = Field(5e-5, ge=0, description="grid points need this much texture (cv2.cornerMinEigenVal)")
    reseed_every: int = Field(
        10, ge=1, description="every this many frames (and at the last frame), seed new points where no track is visible"
    )
    max_points: int = Field(
        2000, ge=1, description="cap on the first tracking chunk's queries; later chunks top up to this many live tracks"
    )
    dino: DinoConfig = DinoConfig()


class TrackConfig(_Frozen):
    backend: Literal["lk", "cotracker"] = Field(
        "lk", description="lk: OpenCV pyramidal Lucas-Kanade, forward-backward checked; cotracker: CoTracker3 "
        "(torch.hub; `cotracker_repo`, `cotracker_model`, `weights`), its visibility combined with the depth check"
    )
    cotracker_repo: str = Field(
        "facebookresearch/co-tracker", description="torch.hub repository, or a local directory holding its "
        "hubconf.py (a checkout, or the hub cache's facebookresearch_co-tracker_main)"
    )
    cotracker_model: Literal["cotracker3_offline", "cotracker3_online"] = Field(
        "cotracker3_offline", description="hub entry: offline (windows of `window` frames with `overlap`) or online "
        "(its own sliding window of 16 frames)"
    )
    weights: str | None = Field(
        None, description="CoTracker checkpoint file (.pth/.safetensors, tensors only); None: the released one from "
        "the torch hub cache; \"random\": random weights (tests and benchmarks only)"
    )
    window: int = Field(60, ge=2, description="cotracker offline: frames per window (memory grows with it)")
    overlap: int = Field(12, ge=1, description="cotracker offline: frames shared by consecutive windows (tracks are "
                         "handed on at their last visible frame in it)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="cotracker: auto = cuda (bf16 autocast) when present")
    gpus: float = Field(
        0.0, ge=0, description="GPUs each episode's Ray task reserves for CoTracker (fractions share a GPU; set it with "
        "the cotracker backend on GPU nodes)"
    )
    window_px: int = Field(11, ge=5, description="LK window side (larger windows drag points along with occluders)")
    pyramid_levels: int = Field(3, ge=0)
    fb_max_px: float = Field(1.0, gt=0, description="forward-backward error above which a step is not trusted")
    depth_jump_m: float = Field(0.02, gt=0, description="depth change vs the track's own 3D prediction that ends visibility")
    max_gap_frames: int = Field(30, ge=0, description="a lost track may be re-acquired within this many frames")
    reacquire_depth_m: float = Field(0.005, gt=0, description="a carried point is seen again when observed depth agrees this well")
    estimated_pose_slack_m: float = Field(
        0.0, ge=0, description="with estimated camera poses, a flat point (followed only as a static world point) "
        "is seen where the surface is within reacquire_depth_m plus this of it (the poses' own error moves it a few "
        "mm). 0.005 lifts orbit coverage ~0.02 but raises moving p90 ~0.2 cm (BENCHMARKS.md), hence off"
    )
    reacquire_ncc: float = Field(0.5, ge=-1, le=1, description="and when it looks like it did (NCC vs the last visible patch)")
    rigid_tol_m: float = Field(0.01, ge=0, description="a step disagreeing this much with its neighbours' rigid motion is not trusted (0: off)")
    end_lost_movers: bool = Field(
        False, description="a lost point moving more than 5 mm per frame that no neighbour moving like it carries ends "
        "(off: it waits where it was lost and may be found there again, on smooth moving surfaces wrongly); on: moving "
        "p90 much lower, a little less coverage (BENCHMARKS.md, issue 17)"
    )
    flat_motion_m: float = Field(0.01, gt=0, description="textured tracks moving more than this make nearby flat points suspect")
    flat_radius_m: float = Field(
        0.05, gt=0, description="flat points this close to a moving textured track are dropped (0.1 emptied the table "
        "around a robot arm: sweep, unseen, fell to 0.57 coverage)"
    )
    min_visible_frames: int = Field(10, ge=1, description="tracks seen in fewer frames (query included) are dropped: too short to be a trace")
    min_texture: float = Field(1e-4, ge=0, description="LK minEigThreshold: steps on flat texture are not trusted")
    chunk_frames: int = Field(
        360, ge=2, description="progressive tracking: frames in memory at once (the published 360); every track walks "
        "on into the next chunk from its last 3D world position, new queries go only where no visible track is"
    )
    chunk_overlap: int = Field(
        60, ge=1, description="frames a chunk shares with the one before: a query seeded in a chunk is tracked "
        "backwards at least this far (must be below chunk_frames)"
    )


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
    rigid_group_tol_m: float = Field(
        0.03, gt=0, description="moving tracks whose separation changes less than this (median) form one entity"
    )
    rigid_group_min_frames: int = Field(5, ge=2, description="frames two tracks must share to be compared")


class RetargetConfig(_Frozen):
    step: float = Field(0.05, gt=0, description="arc-length resampling step in (u/W, v/H, z m) units")
    future_len: int = Field(128, ge=2)
    history_len: int = Field(32, ge=1)
    top_frac: float = Field(0.02, gt=0, le=1, description="robust speed = mean of this top fraction of segment lengths")
    min_future_steps: int = Field(2, ge=1, description="frames with fewer valid future steps are skipped")
    max_span_frames: int = Field(
        3000, ge=1, description="how far (stored frames) an anchor's future and history may reach; keeps the samples "
        "stage linear in the episode's length (episodes up to this long are unaffected)"
    )


class LeRobotConfig(_Frozen):
    """How a LeRobot v3 dataset is read (docs/architecture.md#input-format-3-lerobot); other sources ignore it."""

    camera: str | None = Field(None, description="video feature whose frames are traced; None: the first one in meta/info.json")
    episodes: tuple[int, ...] | None = Field(None, description="episode_index values to ingest; None: every episode")
    state_key: str | None = Field("observation.state", description="feature stored as demonstrations.state; None: none")
    action_key: str | None = Field("action", description="feature stored as demonstrations.action; None: none")
    depth_key: str | None = Field(
        None, description="feature holding depth registered to the camera (a video flagged video.is_depth_map, or a "
        "numeric (H, W[, 1]) column); None: the dataset's one depth feature if it has one"
    )
    depth_scale: float = Field(1.0, gt=0, description="meters per stored depth unit (0.001 for millimetres)")


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
    lerobot: LeRobotConfig = LeRobotConfig()
    jpeg_quality: int = Field(90, ge=10, le=100, description="quality of the stored frames")

    def extraction_key(self) -> str:
        """The settings that change extracted data (part of the episode id); labels and resources do not.

        `lerobot` is left out: it only matters to LeRobot sources, whose ids add the settings that change
        an episode's data (camera, keys) themselves (tasks/run/lerobot_sources.py), so other ids stay as they were.
        """
        exclude = {
            "corpus": True, "lerobot": True, "decode": {"spill_mb", "spill_dir"},
            "depth": {"device", "batch_size", "gpus"}, "captions": {"gpus"},
            "track": {"device", "gpus"}, "keypoints": {"dino": {"device", "batch_size", "gpus"}},
        }
        return self.model_dump_json(exclude=exclude)


# Real-footage presets cap the working width: a 4K source is scaled while decoding, never held whole.
WORKING_WIDTH = 1280

PRESETS: dict[str, IngestConfig] = {
    "sim": IngestConfig(preset="sim", corpus="sim"),
    "generic": IngestConfig(preset="generic", decode=DecodeConfig(target_fps=10.0, max_width=WORKING_WIDTH)),
    "droid": IngestConfig(preset="droid", corpus="droid", decode=DecodeConfig(target_fps=5.0, max_width=WORKING_WIDTH)),
    "agibot": IngestConfig(
        preset="agibot", corpus="agibot", decode=DecodeConfig(target_fps=5.0, max_width=WORKING_WIDTH),
        # AgiBot's longer chunks (docs/method.md#stage-7-segmentation-and-captions)
        captions=CaptionConfig(max_chunk_len=300, max_chunks=3),
    ),
    "egodex": IngestConfig(preset="egodex", corpus="egodex", decode=DecodeConfig(target_fps=10.0, max_width=640)),
}


M = TypeVar("M", bound=BaseModel)


class SettingError(ValueError):
    """An override that does not fit its config (unknown setting, refused value, unreadable file); the message says how."""


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 core scalars: `off`, `no`, `on`, `1:30` and dates stay strings (`--set captions.backend=off`)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> object:
    """YAML with 1.2 scalars, for setting values and config files alike."""
    return yaml.load(text, Loader=_Yaml12Loader)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or str(exc).splitlines()[0]}{where}"


def parse_value(text: str) -> object:
    """A command-line value as YAML: `5`, `0.7`, `true`, `null`, `[1,2]`, `depth-anything`; empty is ""."""
    if not text.strip():
        return ""
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise SettingError(f"cannot read {text!r} as a YAML value: {_yaml_problem(exc)}") from None


def parse_assignments(items: Iterable[str]) -> dict[str, object]:
    """`["decode.target_fps=5", ...]` -> {"decode.target_fps": 5, ...}; a later assignment to a path wins."""
    out: dict[str, object] = {}
    for item in items:
        path, sep, value = item.partition("=")
        if not sep or not path.strip():
            raise SettingError(f"expected KEY=VALUE (e.g. decode.target_fps=5), got {item!r}")
        out[path.strip()] = parse_value(value)
    return out


def _group(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The config class of field `name` when it is a group of settings (a nested model), else None."""
    annotation = model.model_fields[name].annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def check_setting(model: type[BaseModel], path: str) -> type[BaseModel] | None:
    """Refuse a dotted path that names no setting, listing the valid ones at that level and the closest
    match; returns the group's class when the path names a group (so a mapping may be given for it)."""
    node: type[BaseModel] | None = model
    parts = path.split(".")
    for i, key in enumerate(parts):
        where = ".".join(parts[:i])
        if node is None:
            raise SettingError(f"unknown setting {path!r}: {where!r} is a single value, not a group of settings")
        if key not in node.model_fields:
            names = sorted(node.model_fields)
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean {'.'.join([*parts[:i], close[0], *parts[i + 1:]])!r}?" if close else ""
            raise SettingError(f"unknown setting {path!r}; {where or 'the top level'} has: {', '.join(names)}.{hint}")
        node = _group(node, key)
    return node


def flatten_settings(model: type[BaseModel], mapping: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """A nested mapping as dotted paths, each checked against `model` (a mapping under a group is descended)."""
    out: dict[str, object] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        group = check_setting(model, path)
        if group is not None and isinstance(value, Mapping):
            out.update(flatten_settings(model, value, path + "."))
        else:
            out[path] = value
    return out


def deep_merge(base: Mapping[str, object], over: Mapping[str, object]) -> dict[str, object]:
    """`base` with `over` laid on top, mappings merged key by key rather than replaced."""
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        out[key] = deep_merge(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return out


def error_text(err: Mapping[str, object]) -> str:
    """One pydantic error's message without the "Value error, " that pydantic puts before a validator's own words."""
    return str(err["msg"]).removeprefix("Value error, ")


def _describe(exc: ValidationError) -> str:
    """pydantic's messages, each naming the setting it refuses."""
    parts = []
    for err in exc.errors():
        where = repr(".".join(str(p) for p in err["loc"])) if err["loc"] else "the config"
        got = "" if isinstance(err.get("input"), Mapping) else f" (got {err.get('input')!r})"
        parts.append(f"invalid value for {where}: {error_text(err)}{got}")
    return "; ".join(parts)


def with_overrides(cfg: M, overrides: Mapping[str, object]) -> M:
    """`cfg` (any frozen config) with dotted-path settings replaced ({"depth.backend": "depth-anything"}),
    validated again; a mapping given for a group is merged into it. Raises SettingError."""
    data: dict[str, object] = cfg.model_dump()
    for path, value in overrides.items():
        if check_setting(type(cfg), path) is not None and isinstance(value, Mapping):
            flatten_settings(type(cfg), value, path + ".")  # names checked here, with the closest match
        for key in reversed(path.split(".")):
            value = {key: value}
        data = deep_merge(data, value)
    try:
        return type(cfg).model_validate(data)
    except ValidationError as exc:
        raise SettingError(_describe(exc)) from None


def read_config_file(path: str | Path) -> dict[str, object]:
    """A partial config from a YAML file: a (nested) mapping of settings. Raises SettingError."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise SettingError(f"cannot read config file {str(p)!r}: {exc.strerror or exc}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SettingError(f"config file {str(p)!r} is not YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingError(f"config file {str(p)!r} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def merge_config(cfg: M, partial: Mapping[str, object]) -> M:
    """`cfg` with a partial config (nested mapping, e.g. from a YAML file) merged deeply over it."""
    return with_overrides(cfg, flatten_settings(type(cfg), partial))


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
