"""Hostile inputs (issue 13): each one is a failed row whose message names the file and the real cause.

Nothing here is mocked: every input is a real file built in tmp_path (PyAV videos, a cv2 PNG, numpy
arrays) and goes through the runner's precheck and stages, as an ingest would send it.
"""

from __future__ import annotations

import fractions
import json
import re
import shutil
import tracemalloc
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tasks.config import DecodeConfig, get_preset, with_overrides
from tasks.extract import decode as decode_module
from tasks.extract.decode import decode
from tasks.extract.intrinsics import resize_intrinsics
from tasks.geometry import intrinsics_from_fov
from tasks.run.episode import run_stages, stages_until
from tasks.types import EpisodeSource

SIM = get_preset("sim")
REAL_CLIPS = Path("/work/shared/videos/real")
W, H = 64, 48


def write_video(path, n=12, w=W, h=H, fps=10, options=None, pts_ms=None, fmt=None):
    """Textured random frames (x264); `pts_ms` sets each frame's time for a variable frame rate."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if pts_ms is not None:
            s.codec_context.time_base = s.time_base = fractions.Fraction(1, 1000)
        for i in range(len(pts_ms) if pts_ms is not None else n):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], fractions.Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


def cut_in_half(path, faststart=False):
    full = write_video(path.with_suffix(".full.mp4"), n=40, options={"movflags": "faststart"} if faststart else None)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_bytes(data: bytes):
    def write(path):
        path.write_bytes(data)
        return path

    return write


def write_png(path):
    ok, png = cv2.imencode(".png", np.full((H, W, 3), 128, np.uint8))
    path.write_bytes(png.tobytes())
    return path


def write_audio(path):
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_episode(root: Path, n=12) -> Path:
    """A well-formed episode directory (video, depth, cameras, meta) of `n` frames."""
    root.mkdir(parents=True)
    write_video(root / "video.mp4", n=n)
    np.save(root / "depth.npy", np.full((n, H, W), 1.5, np.float32))
    np.savez(root / "cameras.npz", K=intrinsics_from_fov(W, H, 60), w2c=np.tile(np.eye(4), (n, 1, 1)))
    (root / "meta.json").write_text(json.dumps({"instruction": "wave", "fps": 10}))
    return root


def video_src(path):
    return EpisodeSource(uri=str(path), episode_id="x", kind="video")


def dir_src(path):
    return EpisodeSource(uri=str(path), episode_id="x", kind="dir")


def failure(ep) -> str:
    """The one message of a failed episode; never a traceback or a bug report from the runner."""
    assert ep.status == "failed", (ep.status, ep.errors)
    [(stage, msg)] = [(k, v) for k, v in ep.errors.items() if k != "decode_note"]
    assert "Traceback" not in msg and not re.search(r"\(at \w+\.py:\d+\)", msg), msg  # an expected error, not a bug
    return f"{stage}: {msg}"


BROKEN_VIDEOS = {
    "empty.mp4": (write_bytes(b""), r"empty\.mp4: file is empty \(0 bytes\)"),
    "half.mp4": (cut_in_half, r"half\.mp4: the file is truncated: its 'mdat' box .* declares \d+ bytes, only \d+ are there"),
    "half-faststart.mp4": (
        lambda p: cut_in_half(p, faststart=True),
        r"half-faststart\.mp4: the file is truncated: its 'mdat' box",
    ),
    "notes.mp4": (write_bytes(b"shot list: take 3\n"), r"notes\.mp4: a text file \(it starts 'shot list: take 3'\), not a video"),
    "noise.mp4": (
        write_bytes(np.random.default_rng(1).bytes(4096)),
        r"noise\.mp4: not a video FFmpeg can read \(Invalid data found when processing input\)",
    ),
    "video.mp4": (write_png, r"video\.mp4: an image \(PNG\), not a video"),
    "audio.mp4": (write_audio, r"audio\.mp4: no video stream; it holds only audio \(aac\)"),
    "one-frame.mp4": (lambda p: write_video(p, n=1), r"one-frame\.mp4: 1 frame; at least 10 are needed"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_VIDEOS))
def test_broken_video_files_are_refused_before_decoding(name, tmp_path, monkeypatch):
    make, cause = BROKEN_VIDEOS[name]
    path = make(tmp_path / name)
    monkeypatch.setattr(decode_module, "read_video", lambda *a: pytest.fail("decoded a file the precheck must refuse"))
    msg = failure(run_stages(video_src(path), SIM))
    assert re.search(r"^decode: " + re.escape(str(tmp_path)) + "/" + cause, msg), msg


def test_an_image_named_video_mp4_is_named_as_one_not_blamed_on_depth(tmp_path):
    ep = make_episode(tmp_path / "ep")
    write_png(ep / "video.mp4")
    msg = failure(run_stages(dir_src(ep), SIM))
    assert re.search(r"^decode: .*/ep/video\.mp4: an image \(PNG\), not a video$", msg), msg


def test_a_video_cut_inside_its_frames_fails_as_truncated(tmp_path):
    """The box sizes can be whole while the frames are not (a copy that wrote zeros): decoding says so."""
    path = write_video(tmp_path / "zeroed.mp4", n=40, options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    msg = failure(run_stages(video_src(path), with_overrides(SIM, {"depth.backend": "depth-anything"}), stages_until("decode")))
    assert re.search(r"zeroed\.mp4: decoding stops after frame \d+ of 40 .*; the file is truncated or damaged", msg), msg


def test_too_few_frames_after_subsampling_says_which_rate_keeps_enough(tmp_path):
    path = write_video(tmp_path / "short.mp4", n=30, fps=30)
    cfg = with_overrides(SIM, {"decode.target_fps": 2, "depth.backend": "depth-anything"})
    msg = failure(run_stages(video_src(path), cfg, stages_until("decode")))
    hint = re.search(r"--set decode\.target_fps=([\d.]+) keeps enough", msg)
    assert hint and re.search(r"short\.mp4: 30 frames, but decode\.target_fps=2 keeps 2 of them", msg), msg
    assert "at least 10 are needed" in msg
    fixed = with_overrides(cfg, {"decode.target_fps": float(hint.group(1))})
    assert run_stages(video_src(path), fixed, stages_until("decode")).n_frames >= 10  # the advice works


def test_frame_count_is_checked_where_it_is_known(tmp_path):
    """Matroska does not announce its frame count: the precheck lets it through, decoding refuses it."""
    path = write_video(tmp_path / "one.mkv", n=1, fmt="matroska")
    cfg = with_overrides(SIM, {"depth.backend": "depth-anything"})
    msg = failure(run_stages(video_src(path), cfg, stages_until("decode")))
    assert re.search(r"^decode: .*one\.mkv: 1 frame; at least 10 are needed", msg), msg


@pytest.mark.parametrize("clip,decoded,announced", [("teddy", 141, 142), ("pillow", 147, 149)])
def test_real_clips_announcing_a_few_more_frames_are_ok_with_a_note(clip, decoded, announced):
    if not REAL_CLIPS.is_dir():
        pytest.skip(f"{REAL_CLIPS} (the shared real clips) is absent on this machine")
    cfg = with_overrides(get_preset("generic"), {"decode.target_fps": None, "depth.backend": "depth-anything"})
    ep = run_stages(video_src(REAL_CLIPS / f"{clip}.mp4"), cfg, stages_until("decode"))
    assert ep.status == "ok" and ep.n_frames == decoded, ep.errors
    assert re.fullmatch(
        rf"{clip}\.mp4: decoded {decoded} of the {announced} frames the container announces \(edit list or dropped "
        r"frames; up to \d missing are tolerated\)",
        ep.errors["decode_note"],
    ), ep.errors


def test_4k_frames_are_scaled_as_they_are_decoded(tmp_path, monkeypatch):
    """Converting each frame straight to the working size: nothing near a 4K frame is ever allocated."""
    path = tmp_path / "4k.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 3840, 2160, "yuv420p"
        for i in range(4):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((2160, 3840, 3), 40 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    tracemalloc.start()
    try:
        ep = decode(video_src(path), DecodeConfig(max_width=640))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ep.frames.shape == (4, 360, 640, 3)
    assert peak < 3840 * 2160 * 3, f"peak {peak / 1e6:.0f} MB: a full-resolution frame was held"
    for preset in ("generic", "droid", "agibot"):  # the presets for real footage cap the width themselves
        assert decode(video_src(path), get_preset(preset).decode.model_copy(update={"target_fps": None})).frames.shape[2] == 1280


def test_resized_frames_depth_and_K_stay_consistent(tmp_path):
    """A bright square drawn at a known 3D point lands where the resized K projects it; depth follows, nearest."""
    Wf, Hf, n = 320, 240, 12
    K = intrinsics_from_fov(Wf, Hf, 60)
    X = np.array([0.05, -0.02, 1.0])
    u, v = (K @ X)[:2] / X[2]
    img = np.zeros((Hf, Wf, 3), np.uint8)
    iu, iv = int(round(u)), int(round(v))
    img[iv - 8 : iv + 8, iu - 8 : iu + 8] = 255  # centred at (iu - 0.5, iv - 0.5)
    ep_dir = tmp_path / "ep"
    ep_dir.mkdir()
    with av.open(str(ep_dir / "video.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=10, options={"crf": "0"})
        s.width, s.height, s.pix_fmt = Wf, Hf, "yuv444p"
        for _ in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    depth = (1 + np.arange(n * Hf * Wf, dtype=np.float32).reshape(n, Hf, Wf) % 997) / 100
    np.save(ep_dir / "depth.npy", depth)
    np.savez(ep_dir / "cameras.npz", K=K, w2c=np.tile(np.eye(4), (n, 1, 1)))
    ep = decode(dir_src(ep_dir), DecodeConfig(max_width=80))
    assert ep.frames.shape == (n, 60, 80, 3) and ep.depth.shape == (n, 60, 80)
    np.testing.assert_allclose(ep.K, resize_intrinsics(K, (Wf, Hf), (80, 60)))
    g = ep.frames[0, ..., 0].astype(np.float64)
    yy, xx = np.mgrid[: g.shape[0], : g.shape[1]]
    centroid = np.array([(g * xx).sum(), (g * yy).sum()]) / g.sum()
    expected = ((iu - 0.5) + 0.5) * 0.25 - 0.5, ((iv - 0.5) + 0.5) * 0.25 - 0.5
    assert np.allclose(centroid, expected, atol=0.05), (centroid, expected)
    nearest = np.stack([cv2.resize(d, (80, 60), interpolation=cv2.INTER_NEAREST) for d in depth])
    np.testing.assert_array_equal(ep.depth, nearest)


def test_variable_frame_rate_keeps_each_frames_time(tmp_path):
    pts_ms = [0, 33, 66, 100, 200, 233, 266, 400, 433, 466, 500, 533]
    path = write_video(tmp_path / "vfr.mp4", pts_ms=pts_ms)
    cfg = with_overrides(SIM, {"depth.backend": "depth-anything"})
    ep = run_stages(video_src(path), cfg, stages_until("decode"))
    assert ep.status == "ok" and list(ep.frame_index) == list(range(12)), ep.errors
    np.testing.assert_allclose(ep.meta["timestamps_s"], np.asarray(pts_ms) / 1000, atol=1e-3)
    assert re.search(r"vfr\.mp4: variable frame rate \(frame intervals 33-134 ms, median 33 ms\)", ep.errors["decode_note"])
    with av.open(str(path)) as c:
        assert ep.fps == pytest.approx(float(c.streams.video[0].average_rate))  # the average, as the container says


def _depth(ep: Path, change) -> None:
    d = np.full((12, H, W), 1.5, np.float32)
    result = change(d)
    np.save(ep / "depth.npy", d if result is None else result, allow_pickle=True)


def _infinite_frames(d):
    d[3:5] = np.inf


def _negative_patch(d):
    d[7, :20] = -1.0  # 20 of 48 rows: 42% of one frame


def _holes(d):
    d[[2, 9]] = np.nan
    d[[2, 9], :10] = 2.0


def _objects(d):
    return np.array([{"depth": 1.5}] * 12, dtype=object)


DEPTH = r"/ep/depth\.npy: "
DEPTH_CASES = {  # case: (change to a good depth array, stage: cause)
    "wrong shape": (
        lambda d: d[:, ::2, ::2],
        r"decode: .*" + DEPTH + r"depth has shape \(12, 24, 32\), expected \(T, H, W\) = \(12, 48, 64\)",
    ),
    "object dtype": (_objects, r"decode: .*" + DEPTH + r"holds pickled Python objects \(dtype object\)"),
    "integers": (lambda d: d.astype(np.int32), r"decode: .*" + DEPTH + r"depth dtype int32; expected float16/float32"),
    "all NaN": (
        lambda d: d * np.nan,
        r"depth: .*" + DEPTH + r"100% of depth values are NaN, infinite or <= 0 \(0 px infinite, 0 px negative\)",
    ),
    "+inf frames": (
        _infinite_frames,
        r"depth: .*" + DEPTH + r"2 of 12 frames hold infinite or negative depth in more than 1% of their pixels "
        r"\(frames 3, 4: 6144 px infinite, 0 px negative\); depth must be meters > 0, with NaN or 0 where unknown",
    ),
    "negative patch": (
        _negative_patch,
        r"depth: .*" + DEPTH + r"1 of 12 frames hold .* \(frames 7: 0 px infinite, 1280 px negative\)",
    ),
    "holes in two frames": (
        _holes,
        r"depth: .*" + DEPTH + r"2 of 12 frames have no valid depth in more than 50% of their pixels "
        r"\(frames 2, 9; up to 79%\)",
    ),
}


@pytest.mark.parametrize("case", sorted(DEPTH_CASES))
def test_bad_depth_names_depth_npy_and_the_cause(case, tmp_path):
    change, cause = DEPTH_CASES[case]
    ep = make_episode(tmp_path / "ep")
    _depth(ep, change)
    msg = failure(run_stages(dir_src(ep), SIM))
    assert re.search(cause, msg), msg


def test_depth_of_random_bytes_or_cut_short_is_not_called_pickled(tmp_path):
    ep = make_episode(tmp_path / "ep")
    (ep / "depth.npy").write_bytes(np.random.default_rng(2).bytes(5000))
    msg = failure(run_stages(dir_src(ep), SIM))
    assert re.search(r"depth\.npy: not a \.npy array \(no NPY header\); save it with numpy\.save", msg), msg
    assert "pickle" not in msg
    np.save(ep / "depth.npy", np.full((12, H, W), 1.5, np.float32))
    (ep / "depth.npy").write_bytes((ep / "depth.npy").read_bytes()[:40000])
    msg = failure(run_stages(dir_src(ep), SIM))
    cause = r"depth\.npy: truncated: its header describes a \(12, 48, 64\) float32 array \(\d+ bytes\), the file has 40000"
    assert re.search(cause, msg), msg


def test_a_few_unknown_pixels_per_frame_are_fine(tmp_path):
    ep = make_episode(tmp_path / "ep")
    d = np.full((12, H, W), 1.5, np.float32)
    d[:, :5] = 0.0  # a sensor's unknown border
    d[4, 10, 10] = np.inf  # one broken pixel: under 1% of the frame
    np.save(ep / "depth.npy", d)
    got = run_stages(dir_src(ep), SIM, stages_until("depth"))
    assert got.status == "ok", got.errors
    assert np.isnan(got.depth[:, :5]).all() and np.isnan(got.depth[4, 10, 10])


def _w2c(n=12):
    return np.tile(np.eye(4), (n, 1, 1))


def _skewed():
    w2c = _w2c()
    w2c[4, :3, :3] *= 1.5
    return w2c


def _mirrored():
    w2c = _w2c()
    w2c[6, 0, 0] = -1.0
    return w2c


CAMERA_CASES = {
    "non-orthonormal": (
        lambda p: np.savez(p, K=intrinsics_from_fov(W, H, 60), w2c=_skewed()),
        r"cameras\.npz: w2c rotations are not orthonormal in 1 of 12 frames \(first: frame 4, max \|R R\^T - I\| = 1\.25\)",
    ),
    "a reflection": (
        lambda p: np.savez(p, K=intrinsics_from_fov(W, H, 60), w2c=_mirrored()),
        r"cameras\.npz: w2c rotations are not orthonormal in 1 of 12 frames \(first: frame 6, det R = -1, a reflection\)",
    ),
    "too few poses": (
        lambda p: np.savez(p, K=intrinsics_from_fov(W, H, 60), w2c=_w2c(5)),
        r"cameras\.npz: w2c holds 5 camera poses for a video of \d+ frames; one per source frame",
    ),
    "no K": (lambda p: np.savez(p, w2c=_w2c()), r"cameras\.npz: no K in the archive \(it holds w2c\)"),
    "not an archive": (
        lambda p: p.write_bytes(b"K = [[500, 0, 320], [0, 500, 240], [0, 0, 1]]\n"),
        r"cameras\.npz: not an \.npz archive",
    ),
}


@pytest.mark.parametrize("case", sorted(CAMERA_CASES))
def test_bad_cameras_name_cameras_npz_and_the_cause(case, tmp_path):
    write, cause = CAMERA_CASES[case]
    ep = make_episode(tmp_path / "ep")
    write(ep / "cameras.npz")
    msg = failure(run_stages(dir_src(ep), SIM))
    assert re.search(r"^decode: .*/ep/" + cause, msg), msg


def test_meta_that_is_not_json_names_meta_json(tmp_path):
    ep = make_episode(tmp_path / "ep")
    (ep / "meta.json").write_text("instruction: wave\n")
    msg = failure(run_stages(dir_src(ep), SIM))
    assert re.search(r"^decode: .*/ep/meta\.json: invalid JSON \(Expecting value: line 1 column 1", msg), msg
    (ep / "meta.json").write_text('["wave"]')
    assert re.search(r"meta\.json: expected a JSON object, got list", failure(run_stages(dir_src(ep), SIM)))


def test_a_mixed_corpus_fails_only_its_bad_episodes(sim_corpus, tmp_path):
    from storage import query
    from tasks.run.ingest import ingest

    good = sorted(p for p in sim_corpus.iterdir() if p.is_dir())[0]
    root = tmp_path / "corpus"
    shutil.copytree(good, root / "good")
    video = (good / "video.mp4").read_bytes()
    (root / "empty.mp4").write_bytes(b"")
    (root / "truncated.mp4").write_bytes(video[: len(video) // 2])
    (root / "notes.mp4").write_text("this is a text file, not a video\n")
    write_png(root / "image.mp4")
    write_audio(root / "audio.mp4")
    write_video(root / "one-frame.mp4", n=1)
    shutil.copytree(good, root / "inf-depth")
    d = np.load(root / "inf-depth" / "depth.npy")
    d[10:13] = np.inf
    np.save(root / "inf-depth" / "depth.npy", d)
    shutil.copytree(good, root / "bad-cameras")
    cams = dict(np.load(good / "cameras.npz"))
    np.savez(root / "bad-cameras" / "cameras.npz", K=cams["K"], w2c=cams["w2c"][:5])
    shutil.copytree(good, root / "bad-meta")
    (root / "bad-meta" / "meta.json").write_text("{not json")

    report = ingest(str(root), str(tmp_path / "traces"), SIM)
    rows = {Path(r["source_uri"]).name: r for r in query.episodes(str(tmp_path / "traces")).to_pylist()}
    assert rows["good"]["status"] == "ok" and json.loads(rows["good"]["errors"]) == {}
    assert rows["good"]["n_samples"] > 0
    causes = {
        "empty.mp4": r"empty\.mp4: file is empty",
        "truncated.mp4": r"truncated\.mp4: the file is truncated",
        "notes.mp4": r"notes\.mp4: a text file",
        "image.mp4": r"image\.mp4: an image \(PNG\), not a video",
        "audio.mp4": r"audio\.mp4: no video stream; it holds only audio",
        "one-frame.mp4": r"one-frame\.mp4: 1 frame; at least 10 are needed",
        "inf-depth": r"inf-depth/depth\.npy: 3 of \d+ frames hold infinite or negative depth .*\(frames 10, 11, 12:",
        "bad-cameras": r"bad-cameras/cameras\.npz: w2c holds 5 camera poses",
        "bad-meta": r"bad-meta/meta\.json: invalid JSON",
    }
    for name, cause in causes.items():
        errors = json.loads(rows[name]["errors"])
        assert rows[name]["status"] == "failed" and len(errors) == 1, (name, errors)
        assert re.search(cause, next(iter(errors.values()))), (name, errors)
    assert report.failed == len(causes) and report.ok == 1
