"""Render a Meta-World corpus as episode directories (docs/architecture.md#input-format-2-episode-directory)
with exact ground truth.

Each episode is one seeded task instance run by Meta-World's scripted expert and rendered every env
step with `mujoco.Renderer` (RGB, metric depth, segmentation) from a free camera, static or orbiting.

Frame alignment (at the default 20 fps): frame 0 is rendered at reset; frame i (> 0) after env step i.
`states[i]` is the observation shown in frame i and `actions[i]` the expert's action from that state
(the last one is computed but not executed). The episode ends `tail` env steps after the first success,
or at `max_steps` env steps.

Source rates: the simulated timeline is always one env step = 1/20 s. At `fps` = 20k (40, 60, ...) k
frames are written per env step, the k-1 between two steps rendered from the simulator state
interpolated between them (joint positions linearly, quaternions by slerp) in a scratch `MjData`, so
the physics and the expert never see them; at `fps` = 20/m (10, 5, ...) every m-th env step is
written. `states`/`actions` keep one row per written frame (an interpolated frame repeats the rows of
the env step it starts from); meta.json says so in `frame_alignment`. The orbiting camera moves as a
function of time (`orbit_deg_s`, its peak azimuth rate), so every rate sees the same orbit.

Seeding: `reset(seed=...)` of the gym `Meta-World/MT1` env does not seed object placement (the task
is drawn from an unseeded RNG and `SawyerXYZEnv.reset` ignores the seed), so episodes use the
goal-observable env classes, whose constructor draws the task instance from `seed` deterministically.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

os.environ.setdefault("MUJOCO_GL", "egl")

import av  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from tasks.sim.camera import (  # noqa: E402
    DEFAULT_ORBIT_DEG_S,
    SIM_STEPS_PER_S,
    FreeCamera,
    free_camera_K,
    orbit_camera,
    orbit_period_s,
    scene_w2c,
)

FPS = SIM_STEPS_PER_S  # the default source rate: one frame per env step
SUCCESS_TAIL = 8
INSTRUCTIONS = {
    "assembly": "put the ring on the peg",
    "basketball": "dunk the ball into the basket",
    "bin-picking": "move the puck from one bin to the other",
    "box-close": "put the lid on the box",
    "button-press-topdown": "press the button from the top",
    "button-press-topdown-wall": "press the button from the top behind the wall",
    "button-press": "press the button",
    "button-press-wall": "press the button behind the wall",
    "coffee-button": "push the button on the coffee machine",
    "coffee-pull": "pull the mug from the coffee machine",
    "coffee-push": "push the mug under the coffee machine",
    "dial-turn": "turn the dial",
    "disassemble": "pick the ring off the peg",
    "door-close": "close the door",
    "door-lock": "lock the door by turning the lock",
    "door-open": "open the door",
    "door-unlock": "unlock the door by turning the lock",
    "hand-insert": "insert the gripper into the hole",
    "drawer-close": "close the drawer",
    "drawer-open": "open the drawer",
    "faucet-open": "turn the faucet on",
    "faucet-close": "turn the faucet off",
    "hammer": "hammer the nail into the wall",
    "handle-press-side": "press the handle down sideways",
    "handle-press": "press the handle down",
    "handle-pull-side": "pull the handle up sideways",
    "handle-pull": "pull the handle up",
    "lever-pull": "pull the lever up",
    "pick-place-wall": "pick up the puck and place it at the goal behind the wall",
    "pick-out-of-hole": "pick the peg out of the hole",
    "pick-place": "pick up the puck and place it at the goal",
    "plate-slide": "slide the plate into the cabinet",
    "plate-slide-side": "slide the plate into the cabinet sideways",
    "plate-slide-back": "slide the plate out of the cabinet",
    "plate-slide-back-side": "slide the plate out of the cabinet sideways",
    "peg-insert-side": "insert the peg into the hole sideways",
    "peg-unplug-side": "unplug the peg sideways",
    "soccer": "kick the ball into the goal",
    "stick-push": "push the thermos with the stick",
    "stick-pull": "pull the thermos with the stick",
    "push": "push the puck to the goal",
    "push-wall": "push the puck to the goal around the wall",
    "push-back": "pull the puck back to the goal",
    "reach": "reach the goal position with the gripper",
    "reach-wall": "reach the goal position over the wall",
    "shelf-place": "pick up the puck and place it on the shelf",
    "sweep-into": "sweep the puck into the hole",
    "sweep": "sweep the puck off the table",
    "window-open": "slide the window open",
    "window-close": "slide the window closed",
}
BENCH_TASKS = ["pick-place", "drawer-open", "button-press", "push", "reach"]
HELD_OUT_TASKS = sorted(INSTRUCTIONS)[2::5]
"""Every fifth task in name order (starting at the third), never in a pretraining corpus of the benchmarks:
fixed by rule, not picked by how well a model does on them."""
PRETRAIN_TASKS = [t for t in sorted(INSTRUCTIONS) if t not in HELD_OUT_TASKS]
TASK_SETS = {"bench": BENCH_TASKS, "pretrain": PRETRAIN_TASKS, "held-out": HELD_OUT_TASKS, "all": sorted(INSTRUCTIONS)}


def instruction_of(task: str) -> str:
    """The task's instruction; an unknown task is refused listing the known ones."""
    if task not in INSTRUCTIONS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(INSTRUCTIONS)}")
    return INSTRUCTIONS[task]


def task_names(spec: str) -> list[str]:
    """`pick-place,reach` or a named set from TASK_SETS; unknown names are refused before anything renders."""
    names = [t.strip().removesuffix("-v3") for t in spec.split(",") if t.strip()]
    if len(names) == 1 and names[0] in TASK_SETS:
        return list(TASK_SETS[names[0]])
    unknown = [t for t in names if t not in INSTRUCTIONS]
    if unknown or not names:
        raise ValueError(f"unknown Meta-World task(s) {unknown or spec!r}; named sets: {', '.join(TASK_SETS)}; "
                         f"tasks: {', '.join(sorted(INSTRUCTIONS))}")
    return names


def frames_per_step(fps: int) -> tuple[int, int]:
    """(k, m) for a source rate: k frames written per env step (fps = 20k), or one frame every m env steps (fps = 20/m).

    Other rates are refused: they would need frames at times between env steps that no interpolation
    grid of the 20 steps per second reaches exactly.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps <= 0:
        raise ValueError(f"fps must be a positive whole number of frames per second, not {fps!r}")
    if fps % SIM_STEPS_PER_S == 0:
        return fps // SIM_STEPS_PER_S, 1
    if SIM_STEPS_PER_S % fps == 0:
        return 1, SIM_STEPS_PER_S // fps
    ok_up = ", ".join(str(SIM_STEPS_PER_S * k) for k in (1, 2, 3, 4))
    ok_down = ", ".join(str(d) for d in (10, 5, 4, 2, 1))
    raise ValueError(
        f"fps {fps} is neither a multiple nor a divisor of the simulator's {SIM_STEPS_PER_S} env steps per second: "
        f"use {ok_up}, ... (frames interpolated between env steps) or {ok_down} (every 20/fps-th env step)"
    )


def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Unit quaternion a of the way from q0 to q1 (w, x, y, z) along the shorter arc."""
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    d = float(q0 @ q1)
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:  # nearly equal: normalised lerp is exact enough and stable
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - a) * th) * q0 + np.sin(a * th) * q1) / np.sin(th)


def interpolate_qpos(model: mujoco.MjModel, q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Joint positions a of the way from q0 to q1: linear, but slerp for free- and ball-joint quaternions."""
    q = q0 + a * (q1 - q0)
    for j in range(model.njnt):
        adr = int(model.jnt_qposadr[j])
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            q[adr + 3 : adr + 7] = _slerp(q0[adr + 3 : adr + 7], q1[adr + 3 : adr + 7], a)
        elif model.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
            q[adr : adr + 4] = _slerp(q0[adr : adr + 4], q1[adr : adr + 4], a)
    return q


def _pose_of(data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What places the bodies: joint positions and mocap poses (copies)."""
    return data.qpos.copy(), data.mocap_pos.copy(), data.mocap_quat.copy()


def _pose_between(model: mujoco.MjModel, scratch: mujoco.MjData, p0, p1, a: float) -> mujoco.MjData:
    """`scratch` posed a of the way between two env steps' poses, its kinematics computed (mj_forward)."""
    scratch.qpos[:] = interpolate_qpos(model, p0[0], p1[0], a)
    scratch.mocap_pos[:] = p0[1] + a * (p1[1] - p0[1])
    for b in range(model.nmocap):
        scratch.mocap_quat[b] = _slerp(p0[2][b], p1[2][b], a)
    mujoco.mj_forward(model, scratch)
    return scratch


def _frame_alignment(k: int, m: int) -> str:
    if k == 1 and m == 1:
        return "frame 0 at reset, frame i after step i; actions[i] is taken from states[i]"
    if m > 1:
        return (f"frame f shows env step {m}f (frame 0 at reset; {SIM_STEPS_PER_S} env steps per second, {m - 1} "
                f"skipped between frames); states[f] is that step's observation and actions[f] the expert's action from it")
    return (f"frame {k}i shows env step i (frame 0 at reset; {SIM_STEPS_PER_S} env steps per second); frames {k}i+j "
            f"(0 < j < {k}) are rendered from the simulator state interpolated j/{k} of the way from step i to step i+1 "
            "(joint positions linearly, quaternions by slerp; the physics never sees them) and repeat step i's rows "
            "of states and actions; actions[f] is taken from states[f]")


_RENDER_OFF = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX)


def _make_env(task: str, seed: int):
    """A goal-observable Meta-World env whose task instance (object and goal placement) is fixed by `seed`."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-v3-goal-observable"](seed=seed)


def _render(rd: mujoco.Renderer, model: mujoco.MjModel, data: mujoco.MjData, cam: mujoco.MjvCamera):
    """RGB, metric depth, body id per pixel (-1: no geom) and the w2c of this exact scene."""
    rd.update_scene(data, camera=cam)
    for f in _RENDER_OFF:
        rd.scene.flags[f] = False
    w2c = scene_w2c(rd.scene)
    rgb = rd.render().copy()
    rd.enable_depth_rendering()
    depth = rd.render().astype(np.float32)
    rd.disable_depth_rendering()
    rd.enable_segmentation_rendering()
    seg = rd.render()
    rd.disable_segmentation_rendering()
    is_geom = (seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & (seg[..., 0] >= 0)
    body = np.where(is_geom, model.geom_bodyid[np.clip(seg[..., 0], 0, model.ngeom - 1)], -1).astype(np.int16)
    return rgb, depth, body, w2c


def write_video(path: Path, frames: np.ndarray, fps: int = FPS, crf: int = 12) -> None:
    """High-quality H.264 (yuv420p) so that trackers see nearly the rendered pixels."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "fast"})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_episode(
    out_dir: Path,
    task: str,
    seed: int,
    camera: Literal["static", "orbit"] = "static",
    width: int = 320,
    height: int = 240,
    max_steps: int = 120,
    view: FreeCamera | None = None,
    fps: int = FPS,
    orbit_deg_s: float = DEFAULT_ORBIT_DEG_S,
) -> Path:
    """Roll out the scripted expert on one seeded instance of `task` and write its episode directory.

    `max_steps` counts env steps (1/20 s each); the video holds about max_steps * fps / 20 frames.
    """
    from metaworld.policies import ENV_POLICY_MAP

    instruction_of(task)
    k, m = frames_per_step(fps)
    orbit_period_s(orbit_deg_s)  # refuses a speed that is not a positive number
    view = view or FreeCamera()
    env = _make_env(task, seed)
    env.max_path_length = max(env.max_path_length, max_steps + 1)
    policy = ENV_POLICY_MAP[f"{task}-v3"]()
    model, data = env.model, env.data
    rd = mujoco.Renderer(model, height=height, width=width)
    rgbs, depths, segs, w2cs, states, actions, pos, rot = [], [], [], [], [], [], [], []
    scratch = mujoco.MjData(model) if k > 1 else None  # interpolated frames are posed here, never in `data`

    def shoot(d: mujoco.MjData, state: np.ndarray, action: np.ndarray) -> None:
        """Render the next frame (index len(rgbs), at t = index / fps) from `d` and record its ground truth."""
        cam = orbit_camera(view, len(rgbs), fps, orbit_deg_s) if camera == "orbit" else view
        rgb, depth, body, w2c = _render(rd, model, d, cam.to_mjv())
        for store, x in ((rgbs, rgb), (depths, depth), (segs, body), (w2cs, w2c)):
            store.append(x)
        pos.append(d.xpos.copy())
        rot.append(d.xmat.reshape(-1, 3, 3).copy())
        states.append(state)
        actions.append(action)

    success_step: int | None = None
    prev = None  # (pose, state, action) of the last env step, for the frames interpolated after it
    try:
        with warnings.catch_warnings():  # the experts warn about their own gains on every call
            warnings.filterwarnings("ignore", message="Constant", category=UserWarning)
            obs, _ = env.reset()
            for i in range(max_steps):
                state = obs.astype(np.float32)
                action = np.asarray(policy.get_action(obs), dtype=np.float32)
                if scratch is not None and prev is not None:
                    pose = _pose_of(data)
                    for j in range(1, k):
                        shoot(_pose_between(model, scratch, prev[0], pose, j / k), prev[1], prev[2])
                if i % m == 0:
                    shoot(data, state, action)
                if scratch is not None:
                    prev = (_pose_of(data), state, action)
                if success_step is not None and i >= success_step + SUCCESS_TAIL:
                    break
                obs, _, _, truncated, info = env.step(action)
                if success_step is None and info.get("success", 0) > 0:
                    success_step = i + 1
                if truncated:
                    break
    finally:
        rd.close()
        env.close()

    ep = Path(out_dir) / f"{task}-{seed:05d}"
    ep.mkdir(parents=True, exist_ok=True)
    K = free_camera_K(model, width, height)
    write_video(ep / "video.mp4", np.stack(rgbs), fps=fps)
    np.save(ep / "depth.npy", np.stack(depths))
    np.savez(ep / "cameras.npz", K=K, w2c=np.stack(w2cs))
    np.save(ep / "actions.npy", np.stack(actions))
    np.save(ep / "states.npy", np.stack(states))
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) or f"body{b}" for b in range(model.nbody)]
    np.savez_compressed(
        ep / "ground_truth.npz",
        seg_body=np.stack(segs),
        body_pos=np.stack(pos),
        body_rot=np.stack(rot),
        body_names=np.array(names),
    )
    meta = {
        "instruction": INSTRUCTIONS[task],
        "task": task,
        "fps": fps,
        "embodiment": "robot_gripper",
        "camera": camera,
        "orbit_deg_s": float(orbit_deg_s) if camera == "orbit" else None,
        "seed": seed,
        "success": success_step is not None,
        "width": width,
        "height": height,
        "n_frames": len(rgbs),
        "env_steps_per_s": SIM_STEPS_PER_S,
        "frame_alignment": _frame_alignment(k, m),
    }
    (ep / "meta.json").write_text(json.dumps(meta, indent=2))
    return ep


def generate_corpus(
    out_dir: str | Path,
    episodes: int,
    tasks: list[str],
    camera: Literal["static", "orbit"] = "static",
    width: int = 320,
    height: int = 240,
    seed: int = 0,
    max_steps: int = 120,
    on_episode: Callable[[int, Path], None] | None = None,
    fps: int = FPS,
    orbit_deg_s: float = DEFAULT_ORBIT_DEG_S,
) -> list[Path]:
    """Write `episodes` episode directories under `out_dir`, tasks round-robin, episode i seeded `seed + i`.

    `fps` is the rate of the written videos (20: one frame per env step; see the module docstring),
    `orbit_deg_s` the orbiting camera's peak azimuth rate (default: the corpus's orbit, 31.4 deg/s).
    """
    if not tasks:
        raise ValueError("tasks must name at least one Meta-World task")
    if camera not in ("static", "orbit"):
        raise ValueError(f"camera must be 'static' or 'orbit', not {camera!r}")
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (yuv420p video)")
    frames_per_step(fps)  # a rate the timeline cannot give is refused before anything renders
    orbit_period_s(orbit_deg_s)
    paths = []
    for i in range(episodes):
        task = tasks[i % len(tasks)].removesuffix("-v3")
        path = run_episode(Path(out_dir), task, seed + i, camera, width, height, max_steps, fps=fps, orbit_deg_s=orbit_deg_s)
        paths.append(path)
        if on_episode is not None:
            on_episode(i, path)
    return paths
