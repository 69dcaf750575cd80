"""Source rates and orbit speeds of the Meta-World renderer: the same physical episode at 10, 20, 40 and 60 fps."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from tasks.sim.camera import DEFAULT_ORBIT_DEG_S
from tasks.sim.generate import _slerp, frames_per_step, generate_corpus, interpolate_qpos, run_episode

W, H, STEPS, SEED = 64, 48, 10, 3


def _load(ep) -> dict[str, np.ndarray]:
    gt, cams = np.load(ep / "ground_truth.npz"), np.load(ep / "cameras.npz")
    with av.open(str(ep / "video.mp4")) as c:
        rate = float(c.streams.video[0].average_rate)
        rgb = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return {
        "rgb": rgb, "rate": rate, "depth": np.load(ep / "depth.npy"), "w2c": cams["w2c"], "pos": gt["body_pos"],
        "rot": gt["body_rot"], "seg": gt["seg_body"], "states": np.load(ep / "states.npy"),
        "actions": np.load(ep / "actions.npy"), "meta": json.loads((ep / "meta.json").read_text()),
    }


@pytest.fixture(scope="module")
def rates(tmp_path_factory):
    """One pick-place episode (the expert moves the arm from the first step) rendered at each rate, orbiting."""
    out = tmp_path_factory.mktemp("rates")
    return {
        fps: _load(run_episode(out / str(fps), "pick-place", SEED, "orbit", W, H, STEPS, fps=fps))
        for fps in (10, 20, 40, 60)
    }


def test_40fps_writes_twice_the_frames_and_its_even_frames_are_the_20fps_render(rates):
    a, b = rates[20], rates[40]
    T = len(a["depth"])
    assert T == STEPS and len(b["depth"]) == 2 * T - 1  # the episode ends on an env step: no frames after the last
    for key in ("depth", "w2c", "pos", "rot", "seg", "states", "actions"):
        assert len(b[key]) == 2 * T - 1, key
        assert np.array_equal(b[key][::2], a[key]), key  # rendered and recorded exactly as at 20 fps
    assert np.array_equal(b["states"][1::2], a["states"][:-1])  # interpolated frames repeat their step's rows
    assert np.array_equal(b["actions"][1::2], a["actions"][:-1])
    # the video is lossy H.264, encoded with different neighbours: the same picture within a level or two
    assert np.abs(b["rgb"][::2].astype(int) - a["rgb"]).mean() < 2.0
    assert (b["rate"], b["meta"]["fps"], b["meta"]["n_frames"]) == (40, 40, 2 * T - 1)
    assert "interpolated" in b["meta"]["frame_alignment"]


def test_60fps_and_10fps_share_the_env_step_frames(rates):
    a, c, d = rates[20], rates[60], rates[10]
    assert len(c["depth"]) == 3 * STEPS - 2 and np.array_equal(c["depth"][::3], a["depth"])
    assert np.array_equal(c["pos"][::3], a["pos"]) and np.array_equal(c["w2c"][::3], a["w2c"])
    assert len(d["depth"]) == STEPS // 2 and np.array_equal(d["depth"], a["depth"][::2])
    assert np.array_equal(d["pos"], a["pos"][::2]) and np.array_equal(d["states"], a["states"][::2])
    assert np.array_equal(d["w2c"], a["w2c"][::2])  # the orbit is a function of time, not of frame index
    assert (d["rate"], d["meta"]["fps"]) == (10, 10)
    assert "skipped" in d["meta"]["frame_alignment"]
    assert rates[20]["meta"]["frame_alignment"] == "frame 0 at reset, frame i after step i; actions[i] is taken from states[i]"


def test_interpolated_ground_truth_lies_between_its_neighbours(rates):
    c = rates[60]
    pos, rot = c["pos"], c["rot"]
    step = np.linalg.norm(pos[3::3] - pos[:-3:3], axis=-1)  # (S-1, B) how far each body moves in an env step
    assert step.max() > 0.005  # the arm moves (else the test proves nothing)
    for j in (1, 2):
        p0, p1, pj = pos[:-3:3], pos[3::3], pos[j::3]
        # along the step's chord, a third / two thirds of the way (joint-space interpolation bends it a little)
        expect = p0 + j / 3 * (p1 - p0)
        assert (np.linalg.norm(pj - expect, axis=-1) <= 0.1 * step + 1e-6).all()
        ang = lambda r0, r1: Rotation.from_matrix((np.swapaxes(r0, -1, -2) @ r1).reshape(-1, 3, 3)).magnitude()  # noqa: E731
        total = ang(rot[:-3:3], rot[3::3])
        assert (ang(rot[:-3:3], rot[j::3]) <= total + 1e-6).all() and (ang(rot[j::3], rot[3::3]) <= total + 1e-6).all()
    # within an env step the motion is even: no stop-and-go at the env steps
    d = np.linalg.norm(np.diff(pos, axis=0), axis=-1).max(-1).reshape(-1, 3)  # (S-1, 3) per frame
    assert (d.max(1) <= 1.25 * d.min(1) + 1e-6).all()


def test_slerp_interpolates_free_joint_quaternions():
    q0 = np.array([1.0, 0, 0, 0])
    q1 = Rotation.from_euler("z", 90, degrees=True).as_quat(scalar_first=True)
    half = _slerp(q0, q1, 0.5)
    assert np.isclose(np.linalg.norm(half), 1) and np.isclose(Rotation.from_quat(half, scalar_first=True).magnitude(), np.pi / 4)
    assert np.allclose(_slerp(q0, -q1, 0.5), half)  # the shorter arc whatever the sign

    import mujoco

    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><freejoint/><geom size='.1'/></body>"
        "<body><joint type='hinge'/><geom size='.1'/></body></worldbody></mujoco>"
    )
    a = np.array([0, 0, 0, *q0, 0.0])
    b = np.array([1, 2, 3, *q1, 1.0])
    q = interpolate_qpos(model, a, b, 0.25)
    assert np.allclose(q[:3], [0.25, 0.5, 0.75]) and np.isclose(q[7], 0.25)
    assert np.isclose(Rotation.from_quat(q[3:7], scalar_first=True).magnitude(), np.pi / 8)


def _peak_deg_s(w2c: np.ndarray, fps: float) -> float:
    R = w2c[:, :3, :3]
    return float(np.degrees(Rotation.from_matrix(R[1:] @ np.swapaxes(R[:-1], 1, 2)).magnitude()).max() * fps)


@pytest.mark.parametrize("fps,speed", [(20, 30.0), (40, 10.0), (60, 30.0)])
def test_orbit_peak_angular_speed_matches_orbit_deg_s(tmp_path, fps, speed):
    ep = run_episode(tmp_path, "reach", SEED, "orbit", W, H, STEPS, fps=fps, orbit_deg_s=speed)
    assert abs(_peak_deg_s(np.load(ep / "cameras.npz")["w2c"], fps) / speed - 1) < 0.1
    assert json.loads((ep / "meta.json").read_text())["orbit_deg_s"] == speed


def test_default_orbit_is_the_old_80_frame_orbit(rates):
    assert np.isclose(DEFAULT_ORBIT_DEG_S, 20 * 2 * np.pi / 80 * 20)  # +-20 deg, period 80 frames at 20 fps
    assert abs(_peak_deg_s(rates[20]["w2c"], 20) / DEFAULT_ORBIT_DEG_S - 1) < 0.1
    assert abs(_peak_deg_s(rates[60]["w2c"], 60) / DEFAULT_ORBIT_DEG_S - 1) < 0.1


@pytest.mark.parametrize("fps", [30, 25, 0, -20, 12.5])
def test_rates_off_the_20_steps_per_second_grid_are_refused(tmp_path, fps):
    with pytest.raises(ValueError, match="fps"):
        generate_corpus(tmp_path, 1, ["reach"], width=W, height=H, max_steps=STEPS, fps=fps)
    assert not any(tmp_path.iterdir())  # refused before anything renders


def test_frames_per_step():
    assert [frames_per_step(f) for f in (20, 40, 60, 10, 5)] == [(1, 1), (2, 1), (3, 1), (1, 2), (1, 4)]
    with pytest.raises(ValueError, match="neither a multiple nor a divisor"):
        frames_per_step(30)


def test_bad_orbit_speed_is_refused(tmp_path):
    with pytest.raises(ValueError, match="orbit_deg_s"):
        generate_corpus(tmp_path, 1, ["reach"], camera="orbit", width=W, height=H, max_steps=STEPS, orbit_deg_s=0)


def test_cli_passes_fps_and_orbit_speed_and_refuses_bad_ones(tmp_path):
    from flows.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["sim", "--out", str(tmp_path), "--episodes", "1", "--tasks", "reach", "--max-steps", "10",
                              "--width", "64", "--height", "48", "--fps", "40", "--camera", "orbit", "--orbit-deg-s", "15"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "reach-00000" / "meta.json").read_text())
    assert (meta["fps"], meta["camera"], meta["orbit_deg_s"], meta["n_frames"]) == (40, "orbit", 15.0, 19)
    said = lambda r: " ".join(r.output.replace("│", " ").split())  # noqa: E731
    bad = runner.invoke(app, ["sim", "--out", str(tmp_path / "x"), "--tasks", "reach", "--fps", "30"])
    assert bad.exit_code == 2 and "neither a multiple nor a divisor" in said(bad)
    bad = runner.invoke(app, ["sim", "--out", str(tmp_path / "x"), "--tasks", "reach", "--orbit-deg-s", "30"])
    assert bad.exit_code == 2 and "--camera orbit" in said(bad)
