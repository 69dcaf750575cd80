"""Render a Meta-World corpus as episode directories (docs/architecture.md#input-format-2-episode-directory)
with exact ground truth.

Each episode is one seeded task instance run by Meta-World's scripted expert and rendered every env
step with `mujoco.Renderer` (RGB, metric depth, segmentation) from a free camera, static or orbiting.

Frame alignment: frame 0 is rendered at reset; frame i (> 0) after env step i. `states[i]` is the
observation shown in frame i and `actions[i]` the expert's action from that state (the last one is
computed but not executed). The episode ends `tail` frames after the first success, or at `max_steps`
frames.

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

from tasks.sim.camera import FreeCamera, free_camera_K, orbit_camera, scene_w2c  # noqa: E402

FPS = 20
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
) -> Path:
    """Roll out the scripted expert on one seeded instance of `task` and write its episode directory."""
    from metaworld.policies import ENV_POLICY_MAP

    instruction_of(task)
    view = view or FreeCamera()
    env = _make_env(task, seed)
    env.max_path_length = max(env.max_path_length, max_steps + 1)
    policy = ENV_POLICY_MAP[f"{task}-v3"]()
    model, data = env.model, env.data
    rd = mujoco.Renderer(model, height=height, width=width)
    rgbs, depths, segs, w2cs, states, actions, pos, rot = [], [], [], [], [], [], [], []
    success_frame: int | None = None
    try:
        with warnings.catch_warnings():  # the experts warn about their own gains on every call
            warnings.filterwarnings("ignore", message="Constant", category=UserWarning)
            obs, _ = env.reset()
            for i in range(max_steps):
                cam = orbit_camera(view, i) if camera == "orbit" else view
                rgb, depth, body, w2c = _render(rd, model, data, cam.to_mjv())
                for store, x in ((rgbs, rgb), (depths, depth), (segs, body), (w2cs, w2c)):
                    store.append(x)
                pos.append(data.xpos.copy())
                rot.append(data.xmat.reshape(-1, 3, 3).copy())
                states.append(obs.astype(np.float32))
                action = np.asarray(policy.get_action(obs), dtype=np.float32)
                actions.append(action)
                if success_frame is not None and i >= success_frame + SUCCESS_TAIL:
                    break
                obs, _, _, truncated, info = env.step(action)
                if success_frame is None and info.get("success", 0) > 0:
                    success_frame = i + 1
                if truncated:
                    break
    finally:
        rd.close()
        env.close()

    ep = Path(out_dir) / f"{task}-{seed:05d}"
    ep.mkdir(parents=True, exist_ok=True)
    K = free_camera_K(model, width, height)
    write_video(ep / "video.mp4", np.stack(rgbs))
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
        "fps": FPS,
        "embodiment": "robot_gripper",
        "camera": camera,
        "seed": seed,
        "success": success_frame is not None,
        "width": width,
        "height": height,
        "n_frames": len(rgbs),
        "frame_alignment": "frame 0 at reset, frame i after step i; actions[i] is taken from states[i]",
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
) -> list[Path]:
    """Write `episodes` episode directories under `out_dir`, tasks round-robin, episode i seeded `seed + i`."""
    if not tasks:
        raise ValueError("tasks must name at least one Meta-World task")
    if camera not in ("static", "orbit"):
        raise ValueError(f"camera must be 'static' or 'orbit', not {camera!r}")
    if width % 2 or height % 2:
        raise ValueError("width and height must be even (yuv420p video)")
    paths = []
    for i in range(episodes):
        task = tasks[i % len(tasks)].removesuffix("-v3")
        path = run_episode(Path(out_dir), task, seed + i, camera, width, height, max_steps)
        paths.append(path)
        if on_episode is not None:
            on_episode(i, path)
    return paths
