"""Tests for echoaudit.data.video: round trips, bytes input, determinism, resampling,
resizing against Pillow, gray conversion, montage layout, and every error message."""

from __future__ import annotations

import io
import subprocess

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from echoaudit.data import video as vmod
from echoaudit.data.video import (
    DEFAULT_FPS,
    Video,
    VideoLimits,
    load_video,
    montage_png,
    resample_fps,
    resample_indices,
    resize_frames,
    to_gray,
    to_uint8,
    video_to_mp4_bytes,
    write_video,
)
from echoaudit.errors import VideoError


def gradient_video(t: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    """(T, H, W) float32 in [0.1, 0.9]: a smooth moving wave, different per frame."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.5 + 0.4 * np.sin((x + 0.7 * y + 3 * k) / 9.0) for k in range(t)]).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def avi_bytes(tmp_path_factory) -> bytes:
    path = write_video(tmp_path_factory.mktemp("avi") / "v.avi", gradient_video(), 50)
    return path.read_bytes()


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "ext, fps, min_psnr",
    [(".avi", 50.0, 30.0), (".mp4", 50.0, 30.0), (".gif", 25.0, 45.0), (".npy", DEFAULT_FPS, float("inf"))],
)
def test_round_trip(tmp_path, ext, fps, min_psnr):
    frames = gradient_video()
    path = write_video(tmp_path / f"v{ext}", frames, fps)
    assert path == tmp_path / f"v{ext}" and path.exists()
    v = load_video(path)
    assert isinstance(v, Video) and v.frames.dtype == np.float32
    assert v.frames.shape == frames.shape  # (T, H, W) kept, H != W catches a transpose
    assert v.fps == pytest.approx(fps)
    assert v.num_frames == 12 and v.duration == pytest.approx(12 / fps)
    assert 0.0 <= v.frames.min() and v.frames.max() <= 1.0
    assert psnr(v.frames, frames) >= min_psnr
    # Frames come back in order: each one is closer to its own source than to the next.
    assert psnr(v.frames[5], frames[5]) > psnr(v.frames[5], frames[6]) + 5


def test_gif_and_npy_are_lossless_for_uint8(tmp_path):
    u8 = to_uint8(gradient_video())
    for ext in (".gif", ".npy"):
        v = load_video(write_video(tmp_path / f"v{ext}", u8, 50))
        np.testing.assert_array_equal(to_uint8(v.frames), u8)


def test_avi_keeps_odd_sizes(tmp_path):
    frames = gradient_video(4, 37, 45)
    v = load_video(write_video(tmp_path / "odd.avi", frames, 30))
    assert v.frames.shape == (4, 37, 45) and v.fps == pytest.approx(30)
    assert psnr(v.frames, frames) > 30


def test_lossless_avi_codec(tmp_path):
    u8 = to_uint8(gradient_video(3, 16, 18))
    v = load_video(write_video(tmp_path / "v.avi", u8, 25, codec="ffv1"))
    np.testing.assert_array_equal(to_uint8(v.frames), u8)


def test_gif_with_merged_repeats_is_expanded(tmp_path):
    # Pillow merges identical consecutive frames into one with a longer delay; reading
    # expands it back to the shortest delay.
    u8 = to_uint8(gradient_video(8, 20, 30))
    u8[3] = u8[2]
    path = write_video(tmp_path / "rep.gif", u8, 50)
    with Image.open(path) as im:
        assert im.n_frames == 7
    v = load_video(path)
    assert v.fps == pytest.approx(50)
    np.testing.assert_array_equal(to_uint8(v.frames), u8)


@pytest.mark.parametrize("ext", [".avi", ".mp4", ".gif", ".npy"])
def test_read_from_bytes_equals_read_from_path(tmp_path, ext):
    path = write_video(tmp_path / f"v{ext}", gradient_video(6), 25)
    a = load_video(path)
    b = load_video(path.read_bytes(), extension=ext.lstrip("."))  # "avi" or ".avi" both work
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.fps == b.fps


def test_npy_fps_comes_from_caller(tmp_path):
    path = write_video(tmp_path / "v.npy", gradient_video(5), 10)
    assert load_video(path).fps == DEFAULT_FPS == 50.0
    v = load_video(path, fps=12.5)  # no frame rate stored: taken as the array's rate
    assert v.fps == 12.5 and v.num_frames == 5


# --------------------------------------------------------------------------- determinism / codecs


def test_avi_bytes_are_deterministic(tmp_path):
    frames = gradient_video()
    a = write_video(tmp_path / "a.avi", frames, 50).read_bytes()
    b = write_video(tmp_path / "b.avi", frames.copy(), 50).read_bytes()
    assert a == b
    assert b"Lavf" not in a  # bitexact: no encoder version string
    c = write_video(tmp_path / "c.avi", np.roll(frames, 1, axis=0), 50).read_bytes()
    assert c != a
    probe = ffmpeg("-i", str(tmp_path / "a.avi")).stderr
    assert "Video: mjpeg" in probe and "yuvj420p" in probe


def test_mp4_is_h264_faststart(tmp_path):
    path = write_video(tmp_path / "v.mp4", gradient_video(), 50)
    meta = iio.immeta(path, plugin="FFMPEG")
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    probe = ffmpeg("-i", str(path)).stderr  # independent of imageio
    assert "Video: h264" in probe and "yuv420p" in probe and "64x48" in probe
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: index first
    assert write_video(tmp_path / "w.mp4", gradient_video(), 50).read_bytes() == data


def test_video_to_mp4_bytes_pads_odd_sizes():
    frames = gradient_video(5, 31, 45)
    data = video_to_mp4_bytes(frames, 25)
    assert data == video_to_mp4_bytes(frames, 25)
    assert data[4:8] == b"ftyp"
    assert 0 <= data.find(b"moov") < data.find(b"moof")  # made in a pipe: fragmented, the index first
    v = load_video(data, extension=".mp4")
    assert v.frames.shape == (5, 32, 46) and v.fps == pytest.approx(25)
    assert psnr(v.frames[:, :31, :45], frames) > 30
    # The padding copies the edge, so the new row looks like the last one.
    assert np.abs(v.frames[:, 31] - v.frames[:, 30]).mean() < 0.03


# --------------------------------------------------------------------------- resampling and resizing


@pytest.mark.parametrize(
    "n, fps_in, fps_out, expected",
    [
        (6, 50, 25, [0, 2, 4]),  # halving keeps frames[::2]
        (7, 50, 25, [0, 2, 4]),  # 3.5 output frames -> 3
        (3, 25, 50, [0, 0, 1, 1, 2, 2]),  # doubling shows every frame twice
        (10, 50, 30, [0, 1, 3, 5, 6, 8]),  # floor(j * 5/3)
        (4, 30, 30, [0, 1, 2, 3]),
        (2, 50, 10, [0]),  # never zero frames
    ],
)
def test_resample_indices(n, fps_in, fps_out, expected):
    np.testing.assert_array_equal(resample_indices(n, fps_in, fps_out), expected)


def test_resample_keeps_duration():
    for n, fps_in, fps_out in [(112, 50, 32), (64, 50, 30), (80, 24, 60)]:
        idx = resample_indices(n, fps_in, fps_out)
        assert abs(len(idx) / fps_out - n / fps_in) < 1 / fps_out
        assert np.all(np.diff(idx) >= 0) and idx[-1] <= n - 1


def test_load_video_resamples_and_cuts(tmp_path):
    path = write_video(tmp_path / "v.avi", gradient_video(10), 50)
    full = load_video(path)
    half = load_video(path, fps=25)
    assert half.fps == 25 and half.num_frames == 5
    np.testing.assert_array_equal(half.frames, full.frames[::2])
    np.testing.assert_array_equal(resample_fps(full.frames, 50, 25), full.frames[::2])
    first = load_video(path, fps=100, num_frames=7)
    assert first.num_frames == 7
    np.testing.assert_array_equal(first.frames, full.frames[[0, 0, 1, 1, 2, 2, 3]])
    with pytest.raises(VideoError, match=r"asked for 6 frames at 25 fps, but it has only 5"):
        load_video(path, fps=25, num_frames=6)


def test_resize_matches_pillow_bilinear():
    rng = np.random.default_rng(0)
    frames = rng.random((2, 40, 56), dtype=np.float32)
    for size in [(10, 14), (17, 23), (80, 61)]:
        ours = resize_frames(frames, size)
        ref = np.stack([np.asarray(Image.fromarray(f, mode="F").resize(size[::-1], Image.BILINEAR)) for f in frames])
        assert ours.shape == (2, *size) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, np.clip(ref, 0, 1), atol=1e-4)


def test_resize_area_average_and_int_size():
    # A 1-px checkerboard shrunk 4x averages to 0.5 (no aliasing), for uint8 input too.
    board = (np.indices((64, 64)).sum(0) % 2).astype(np.uint8)[None] * 255
    out = resize_frames(board, 16)
    assert out.shape == (1, 16, 16)
    np.testing.assert_allclose(out[:, 2:-2, 2:-2], 0.5, atol=1e-3)


def test_load_video_size(tmp_path):
    path = write_video(tmp_path / "v.npy", gradient_video(4), 50)
    assert load_video(path, size=32).frames.shape == (4, 32, 32)
    assert load_video(path, size=(24, 16)).frames.shape == (4, 24, 16)
    with pytest.raises(VideoError, match=r"size must be a positive int or \(H, W\).*got \(0, 5\)"):
        load_video(path, size=(0, 5))


# --------------------------------------------------------------------------- gray conversion


def test_to_gray_luma_and_equal_channels(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (3, 8, 9, 3), dtype=np.uint8)
    expected = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    np.testing.assert_allclose(to_gray(rgb), expected, atol=1e-6)
    rgba = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=-1)
    np.testing.assert_allclose(to_gray(rgba), expected, atol=1e-6)
    same = np.repeat(rgb[..., :1], 3, axis=-1)
    np.testing.assert_array_equal(to_gray(same), rgb[..., 0] / np.float32(255))
    np.save(tmp_path / "rgb.npy", rgb)
    np.testing.assert_allclose(load_video(tmp_path / "rgb.npy").frames, expected, atol=1e-6)
    np.save(tmp_path / "c1.npy", rgb[..., :1].astype(np.float64) / 255)
    np.testing.assert_allclose(load_video(tmp_path / "c1.npy").frames, rgb[..., 0] / 255, atol=1e-6)


def test_to_uint8():
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.2, 1.0, 1.3, -0.1])), [0, 51, 255, 255, 0])
    u8 = np.arange(5, dtype=np.uint8)
    assert to_uint8(u8) is u8
    with pytest.raises(VideoError, match="1 NaN/inf"):
        to_uint8(np.array([0.0, np.nan]))
    with pytest.raises(VideoError, match="dtype int32"):
        to_uint8(np.zeros(3, np.int32))


# --------------------------------------------------------------------------- montage


def test_montage_layout(tmp_path):
    a = to_uint8(gradient_video(10, 12, 16))
    b = gradient_video(3, 24, 32)  # other size: resized to the first video's tiles
    path = montage_png([a, b], tmp_path / "m.png", n_frames=4)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (2 * (12 + 2) + 2, 4 * (16 + 2) + 2)
    for c, t in enumerate([0, 3, 6, 9]):  # round(linspace(0, 9, 4))
        np.testing.assert_array_equal(sheet[2:14, 2 + c * 18 : 18 + c * 18], a[t])
    np.testing.assert_array_equal(sheet[16:28, 2:18], to_uint8(resize_frames(b[:1], (12, 16)))[0])
    labelled = np.asarray(Image.open(montage_png([a, b], tmp_path / "l.png", labels=["real", "synthetic"])))
    assert labelled.shape[1] > 6 * 18 + 2  # a label column on the left
    with pytest.raises(VideoError, match="got 1 labels for 2 videos"):
        montage_png([a, b], tmp_path / "x.png", labels=["one"])
    with pytest.raises(VideoError, match=r"writes \.png files; got"):
        montage_png([a], tmp_path / "x.jpg")


# --------------------------------------------------------------------------- read errors


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(VideoError, match=r"video file not found: '.*nope\.avi'"):
        load_video(tmp_path / "nope.avi")
    (tmp_path / "d.avi").mkdir()
    with pytest.raises(VideoError, match="is a folder, not a video file"):
        load_video(tmp_path / "d.avi")


def test_unsupported_extension_and_bytes_without_extension(tmp_path, avi_bytes):
    (tmp_path / "v.mov").write_bytes(avi_bytes)
    with pytest.raises(VideoError, match=r"unsupported video extension '\.mov'; allowed: \.avi, \.gif, \.mp4, \.npy"):
        load_video(tmp_path / "v.mov")
    with pytest.raises(VideoError, match=r"reading \d+ bytes needs extension="):
        load_video(avi_bytes)
    with pytest.raises(VideoError, match="unsupported video extension 'webm'"):
        load_video(avi_bytes, extension="webm")


def test_not_a_video(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(VideoError, match=r"uploaded \.avi \(5000 bytes\) is not a video"):
        load_video(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), extension=".avi")
    (tmp_path / "notes.avi").write_text("hello world\n" * 50)
    with pytest.raises(VideoError, match=r"'.*notes\.avi' is not a video: its content starts with b'hello world"):
        load_video(tmp_path / "notes.avi")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty \(0 bytes\)"):
        load_video(tmp_path / "empty.mp4")


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_files(tmp_path, keep):
    # Noise frames: every frame has many bytes, so a cut lands in the frame data. ffmpeg
    # alone decodes such cut AVI/MP4 files up to the cut without an error.
    frames = np.random.default_rng(0).random((12, 32, 32)).astype(np.float32)
    expected = {
        ".avi": r"truncated or corrupt AVI file: its header declares \d+ bytes, it has \d+",
        ".mp4": r"truncated or corrupt MP4 file: its boxes declare \d+ bytes, it has \d+",
        ".gif": r"truncated or corrupt GIF file \(image file is truncated",
        ".npy": r"truncated or corrupt \.npy file",
    }
    for ext, message in expected.items():
        path = write_video(tmp_path / f"v{ext}", frames, 50)
        data = path.read_bytes()
        with pytest.raises(VideoError, match=message):
            load_video(data[: int(len(data) * keep)], extension=ext)
        path.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(VideoError, match=message):
            load_video(path)


def test_avi_with_fewer_frames_than_its_header(tmp_path):
    # Same byte length as the header says, but the frame data after 40 % is zeros.
    frames = np.random.default_rng(0).random((12, 48, 64)).astype(np.float32)
    data = write_video(tmp_path / "v.avi", frames, 50).read_bytes()
    cut = int(len(data) * 0.4)
    broken = data[:cut] + bytes(len(data) - cut)
    with pytest.raises(VideoError, match=r"truncated or corrupt AVI file: its header lists 12 frames, only \d could"):
        load_video(broken, extension=".avi")


def test_zero_and_one_frame(tmp_path):
    zero = tmp_path / "zero.avi"
    lavfi = ["-f", "lavfi", "-i", "color=c=black:s=16x16:r=25"]
    r = ffmpeg("-v", "error", *lavfi, "-frames:v", "0", "-c:v", "mjpeg", str(zero))
    assert r.returncode == 0 and zero.stat().st_size > 0
    with pytest.raises(VideoError, match=r"zero\.avi' contains zero frames"):
        load_video(zero)
    np.save(tmp_path / "zero.npy", np.zeros((0, 8, 8), np.float32))
    with pytest.raises(VideoError, match="contains zero frames"):
        load_video(tmp_path / "zero.npy")
    for ext in (".avi", ".mp4", ".gif", ".npy"):
        path = write_video(tmp_path / f"one{ext}", gradient_video(1, 16, 16), 25)
        with pytest.raises(VideoError, match=r"has 1 frame\(s\); need at least 2 frames"):
            load_video(path)


def test_limits(tmp_path, avi_bytes):
    path = write_video(tmp_path / "v.avi", gradient_video(20, 48, 64), 50)
    with pytest.raises(VideoError, match=r"frames of 48x64 \(HxW\) pixels; the limit is 32 per side"):
        load_video(path, limits=VideoLimits(max_side=32))
    with pytest.raises(VideoError, match=r"AVI header lists 20 frames; the limit is 10 \(VideoLimits.max_frames\)"):
        load_video(path, limits=VideoLimits(max_frames=10))
    # Bytes are checked before anything is decoded: garbage over the limit reports the size.
    with pytest.raises(VideoError, match=r"is 0\.0 MiB \(5000 bytes\); the limit is 1000 bytes"):
        load_video(bytes(5000), extension=".avi", limits=VideoLimits(max_bytes=1000))
    np.save(tmp_path / "big.npy", np.zeros((30, 8, 8), np.uint8))
    with pytest.raises(VideoError, match=r"has 30 frames; the limit is 10"):
        load_video(tmp_path / "big.npy", limits=VideoLimits(max_frames=10))
    gif = write_video(tmp_path / "v.gif", gradient_video(5, 20, 40), 25)
    with pytest.raises(VideoError, match=r"20x40 \(HxW\) pixels; the limit is 30"):
        load_video(gif, limits=VideoLimits(max_side=30))
    with pytest.raises(ValueError, match="VideoLimits.max_frames must be a positive int; got 0"):
        VideoLimits(max_frames=0)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((3, 4, 4), np.nan, np.float32), r"contains 48 NaN/inf values"),
        (np.array([[[0.5, np.inf]]] * 2), r"contains 2 NaN/inf"),
        (np.zeros((4, 5), np.float32), r"shape \(4, 5\) \(ndim 2\); expected \(T, H, W\)"),
        (np.zeros((2, 4, 5, 2), np.uint8), r"shape \(2, 4, 5, 2\) \(ndim 4\); expected .*C in 1, 3, 4"),
        (np.zeros((2, 4, 5), np.int16), r"dtype int16; allowed: uint8, or float"),
        (np.full((2, 4, 5), 2.0), r"float values in \[2, 2\]; float arrays must lie in \[0, 1\]"),
    ],
)
def test_bad_npy(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(VideoError, match=message):
        load_video(tmp_path / "x.npy")
    with pytest.raises(VideoError, match=message):
        load_video((tmp_path / "x.npy").read_bytes(), extension=".npy")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(VideoError, match="obj.npy': dtype object holds Python objects, which are never unpickled"):
        load_video(tmp_path / "obj.npy")
    with pytest.raises(VideoError, match="dtype object holds Python objects"):
        load_video((tmp_path / "obj.npy").read_bytes(), extension=".npy")


# --------------------------------------------------------------------------- hostile input


def test_default_limits_are_the_module_constants():
    limits = VideoLimits()
    assert (limits.max_bytes, limits.max_frames, limits.max_side, limits.max_pixels) == (
        vmod.MAX_BYTES, vmod.MAX_FRAMES, vmod.MAX_SIDE, vmod.MAX_PIXELS) == (200 * 2**20, 2000, 1024, 2**28)
    assert (limits.min_fps, limits.max_fps) == vmod.FPS_RANGE == (1.0, 1000.0)
    with pytest.raises(ValueError, match="min_fps / max_fps"):
        VideoLimits(min_fps=10, max_fps=5)
    with pytest.raises(VideoError, match="limits must be a VideoLimits; got dict"):
        load_video(b"RIFF", extension=".avi", limits={"max_bytes": 1})


def _mjpeg_with_frame_height(tmp_path, frame: int, height: int) -> bytes:
    """An MJPEG AVI of 6 16x24 frames whose frame ``frame`` declares another height in its
    JPEG header (what a mutated upload looks like)."""
    data = bytearray(write_video(tmp_path / "s.avi", np.random.default_rng(0).random((6, 16, 24)), 25).read_bytes())
    sof = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0]  # start of frame
    assert len(sof) == 6
    data[sof[frame] + 5 : sof[frame] + 7] = height.to_bytes(2, "big")
    return bytes(data)


def test_frame_size_changing_mid_stream_is_corrupt(tmp_path):
    data = _mjpeg_with_frame_height(tmp_path, 2, 8)
    with pytest.raises(VideoError, match=r"uploaded \.avi \(\d+ bytes\): frame 2 is 8x24 \(HxW\) pixels but frame 0 "
                                         r"is 16x24: the frame size changes mid-stream, so the file is corrupt"):
        load_video(data, extension=".avi")
    # GIF: a frame reaching past the logical screen makes Pillow grow the canvas.
    from PIL import Image

    small = [Image.fromarray(np.full((16, 24), 60 * k, np.uint8)) for k in range(3)]
    path = tmp_path / "grow.gif"
    small[0].save(path, save_all=True, append_images=small[1:], duration=40)
    raw = bytearray(path.read_bytes())
    i = raw.index(b"\x2c", raw.index(b"\x2c") + 1)  # the second image descriptor
    raw[i + 1 : i + 3] = (4).to_bytes(2, "little")  # its left edge: 4 px to the right
    path.write_bytes(bytes(raw))
    with pytest.raises(VideoError, match=r"grow\.gif': frame 1 is 16x28 \(HxW\) pixels but frame 0 is 16x24"):
        load_video(path)


def test_header_limits_are_checked_before_decoding(tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded frames of a video over a limit")

    monkeypatch.setattr(vmod, "_decoded", no_decoding)
    path = write_video(tmp_path / "v.mp4", gradient_video(20, 48, 64), 50)
    with pytest.raises(VideoError, match=r"has about 20 frames \(0\.4 s at 50 fps\); the limit is 10"):
        load_video(path, limits=VideoLimits(max_frames=10))
    with pytest.raises(VideoError, match=r"20 frames of 48x64 \(HxW\) = 61440 pixels; the limit is 50000 "
                                         r"\(VideoLimits.max_pixels\)"):
        load_video(path, limits=VideoLimits(max_pixels=50_000))
    with pytest.raises(VideoError, match=r"48x64 \(HxW\) pixels; the limit is 40 per side"):
        load_video(path, limits=VideoLimits(max_side=40))
    # An AVI whose header claims 4 billion frames is refused from the header alone.
    data = bytearray(write_video(tmp_path / "v.avi", gradient_video(4, 16, 16), 50).read_bytes())
    i = data.index(b"avih")
    data[i + 24 : i + 28] = (2**32 - 1).to_bytes(4, "little")
    with pytest.raises(VideoError, match=r"its AVI header lists 4294967295 frames; the limit is 2000"):
        load_video(bytes(data), extension=".avi")


def test_npy_header_is_checked_before_its_data_is_read(tmp_path):
    from numpy.lib import format as npy_format

    def npy_claiming(shape, dtype="|u1", payload=b"") -> bytes:
        out = io.BytesIO()
        npy_format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
        return out.getvalue() + payload

    huge = npy_claiming((100_000, 100_000, 100_000))  # 10**15 bytes claimed, none present
    with pytest.raises(VideoError, match=r"has 100000 frames; the limit is 2000"):
        load_video(huge, extension=".npy")
    with pytest.raises(VideoError, match=r"header declares 192128 bytes, it has 128"):
        load_video(npy_claiming((3, 256, 250)), extension=".npy")
    with pytest.raises(VideoError, match=r"3 frames of 1000x1000 \(HxW\) = 3000000 pixels; the limit is 1000000"):
        load_video(npy_claiming((3, 1000, 1000)), extension=".npy", limits=VideoLimits(max_pixels=10**6))
    (tmp_path / "odd.npy").write_bytes(npy_claiming((2, 4, 4), "<c8", bytes(256)))
    with pytest.raises(VideoError, match=r"odd\.npy': dtype complex64; allowed: uint8, or float"):
        load_video(tmp_path / "odd.npy")


def test_implausible_frame_rates(tmp_path):
    fast = write_video(tmp_path / "fast.avi", gradient_video(4, 16, 16), 100)
    with pytest.raises(VideoError, match=r"fast\.avi' declares 100 fps \(the AVI header\); allowed: 1 to 60 fps "
                                         r"\(VideoLimits.min_fps / max_fps\)"):
        load_video(fast, limits=VideoLimits(max_fps=60))
    assert load_video(fast).fps == pytest.approx(100)
    slow = write_video(tmp_path / "slow.avi", gradient_video(20, 16, 16), 1.5)
    with pytest.raises(VideoError, match=r"20 frames at 1\.5 fps become 6666 frames of 16x16 at 500 fps; the limits "
                                         r"are 2000 frames"):
        load_video(slow, fps=500)
    images = [Image.fromarray(frame) for frame in to_uint8(gradient_video(3, 16, 16))]
    images[0].save(tmp_path / "slow.gif", save_all=True, append_images=images[1:], duration=2000)
    with pytest.raises(VideoError, match=r"slow\.gif' declares 0\.5 fps \(its shortest frame delay of 2000 ms\)"):
        load_video(tmp_path / "slow.gif")


def test_resample_indices_can_stop_early():
    full = resample_indices(10, 1.0, 500.0)
    assert len(full) == 5000
    np.testing.assert_array_equal(resample_indices(10, 1.0, 500.0, max_frames=32), full[:32])
    frames = np.arange(10)[:, None, None]
    assert resample_fps(frames, 1.0, 500.0, max_frames=7).shape == (7, 1, 1)


def test_unreadable_sources(tmp_path):
    (tmp_path / "dev.avi").symlink_to("/dev/zero")
    with pytest.raises(VideoError, match=r"dev\.avi' is not a regular file"):
        load_video(tmp_path / "dev.avi")
    with pytest.raises(VideoError, match="source must be a path or bytes; got int"):
        load_video(3)


# --------------------------------------------------------------------------- write errors


def test_failed_writes_leave_nothing(tmp_path, monkeypatch):
    frames = gradient_video(4, 16, 16)
    with pytest.raises(VideoError, match=r"frames must have shape \(T, H, W\); got shape \(4, 16, 16, 2\)"):
        write_video(tmp_path / "a.avi", np.zeros((4, 16, 16, 2)), 25)
    with pytest.raises(VideoError, match="frames contain 1 NaN/inf"):
        write_video(tmp_path / "a.avi", np.where(np.arange(frames.size).reshape(frames.shape) == 3, np.nan, frames), 25)
    with pytest.raises(VideoError, match=r"even frame height and width; got 15x16"):
        write_video(tmp_path / "a.mp4", frames[:, 1:], 25)
    with pytest.raises(VideoError, match=r"codec 'mpeg4' cannot be written to \.mp4; allowed: libx264"):
        write_video(tmp_path / "a.mp4", frames, 25, codec="mpeg4")
    with pytest.raises(VideoError, match="fps must be a positive finite number; got 0"):
        write_video(tmp_path / "a.avi", frames, 0)
    with pytest.raises(VideoError, match=r"unsupported extension '\.mkv'; allowed: \.avi, \.mp4, \.gif, \.npy"):
        write_video(tmp_path / "a.mkv", frames, 25)
    assert list(tmp_path.iterdir()) == []
    # The encoder fails after writing has started: the half-written temporary file goes,
    # and a file that was there before stays as it was. AVI (PyAV, in-process):
    good = write_video(tmp_path / "a.avi", frames, 25).read_bytes()
    monkeypatch.setitem(vmod._CODEC_PARAMS, "mjpeg", ("no_such_pix_fmt", []))
    with pytest.raises(VideoError, match="could not write .avi with codec mjpeg"):
        write_video(tmp_path / "a.avi", frames[::-1], 25)
    with pytest.raises(VideoError, match="could not write .avi"):
        write_video(tmp_path / "b.avi", frames, 25)
    assert [p.name for p in tmp_path.iterdir()] == ["a.avi"]
    assert (tmp_path / "a.avi").read_bytes() == good
    # MP4 (the ffmpeg binary, whose exit status imageio-ffmpeg would ignore):
    good = write_video(tmp_path / "c.mp4", frames, 25).read_bytes()
    monkeypatch.setitem(vmod._CODEC_PARAMS, "libx264", ("yuv420p", ["-no_such_option", "1"]))
    with pytest.raises(VideoError, match="ffmpeg could not write .mp4 with codec libx264"):
        write_video(tmp_path / "c.mp4", frames[::-1], 25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.avi", "c.mp4"]
    assert (tmp_path / "c.mp4").read_bytes() == good


@pytest.mark.parametrize("ext", [".avi", ".mp4", ".gif", ".npy"])
def test_frame_step_equals_slicing_every_frame(tmp_path, ext):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (21, 32, 48), dtype=np.uint8)
    path = write_video(tmp_path / f"v{ext}", frames, 25.0)
    full = load_video(path, fps=25.0 if ext == ".npy" else None)
    for k in (1, 2, 8):
        part = load_video(path, frame_step=k, fps=25.0 if ext == ".npy" else None)
        np.testing.assert_array_equal(part.frames, full.frames[::k])  # skipped frames decode to nothing else
        assert part.fps == pytest.approx(full.fps / k)
    both = load_video(path, frame_step=3, num_frames=4, size=16, fps=25.0 if ext == ".npy" else None)
    np.testing.assert_array_equal(both.frames, load_video(path, size=16, fps=25.0 if ext == ".npy" else None).frames[::3][:4])


def test_frame_step_after_resampling_and_bad_steps(tmp_path):
    frames = np.random.default_rng(4).integers(0, 256, (40, 16, 16), dtype=np.uint8)
    path = write_video(tmp_path / "v.avi", frames, 50.0)
    np.testing.assert_array_equal(load_video(path, fps=25.0, frame_step=2).frames,
                                  load_video(path, fps=25.0).frames[::2])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(VideoError, match="frame_step must be a positive int"):
            load_video(path, frame_step=bad)


def test_frame_step_still_checks_truncation(tmp_path):
    frames = np.random.default_rng(5).integers(0, 256, (12, 16, 16), dtype=np.uint8)
    data = write_video(tmp_path / "v.avi", frames, 25.0).read_bytes()
    with pytest.raises(VideoError, match="truncated or corrupt AVI"):
        load_video(data[: len(data) // 2], extension=".avi", frame_step=4)


@pytest.mark.parametrize("codec", ["mjpeg", "ffv1", "rawvideo"])
def test_avi_written_in_process_decodes_like_the_ffmpeg_binary(tmp_path, codec):
    """AVIs are encoded with PyAV; the ffmpeg binary with the same settings (what wrote the
    data the demo models were trained on) gives the same pixels back."""
    frames = np.random.default_rng(6).integers(0, 256, (9, 40, 56), dtype=np.uint8)
    ours = write_video(tmp_path / "ours.avi", frames, 29.97, codec=codec)
    params = {"mjpeg": ["-pix_fmt", "yuvj420p", "-q:v", "2"], "ffv1": ["-pix_fmt", "gray"],
              "rawvideo": ["-pix_fmt", "gray"]}[codec]
    ref = tmp_path / "ref.avi"
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
                        "-pix_fmt", "gray", "-s", "56x40", "-r", "2997/100", "-i", "pipe:0", "-c:v", codec, *params,
                        str(ref)], input=frames.tobytes(), capture_output=True)
    assert r.returncode == 0, r.stderr
    a, b = load_video(ours), load_video(ref)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.fps == pytest.approx(b.fps)
