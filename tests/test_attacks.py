"""Disguised copies (echoaudit/data/attacks.py) and clip conforming (echoaudit/data/clips.py)."""

import numpy as np
import pytest
from scipy.ndimage import shift as nd_shift

from echoaudit.data.attacks import (ATTACK_FAMILIES, SPATIAL_FAMILIES, STRENGTHS, TEMPORAL_FAMILIES, affine,
                                    apply_attack, h264, jpeg, narrow_sector, random_disguise)
from echoaudit.data.clips import ClipSpec, conform_clip
from echoaudit.data.phantom import render_video, sample_acquisition, sample_anatomy


@pytest.fixture(scope="module")
def video():
    x, _ = render_video(sample_anatomy(0, "a4c", 3), sample_acquisition(0, "a4c", 3, 0), frames=24, size=64)
    return x.astype(np.float32) / 255


def _blob(size=64, c=(32.0, 32.0), r=6.0, t=3):
    yy, xx = np.mgrid[:size, :size]
    img = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r).astype(np.float32)
    return np.repeat(img[None], t, axis=0)


def _centroid(img):
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    w = img.sum()
    return np.array([(yy * img).sum() / w, (xx * img).sum() / w])


@pytest.mark.parametrize("family", ATTACK_FAMILIES)
@pytest.mark.parametrize("strength", STRENGTHS)
def test_every_attack_is_a_valid_seeded_copy(video, family, strength):
    before = video.copy()
    y, fps = apply_attack(video, 50.0, family, strength, np.random.default_rng(1))
    z, _ = apply_attack(video, 50.0, family, strength, np.random.default_rng(1))
    np.testing.assert_array_equal(video, before)  # the input is not modified
    np.testing.assert_array_equal(y, z)  # same rng seed, same copy
    assert y.dtype == np.float32 and y.shape[1:] == video.shape[1:] and y.min() >= 0 and y.max() <= 1
    if family in SPATIAL_FAMILIES:
        assert len(y) == len(video) and fps == 50.0
        assert 1e-3 < np.abs(y - video).mean() < 0.2  # changed, but not destroyed
    else:
        assert 2 <= len(y) <= len(video)


def test_temporal_attacks_do_what_they_say(video):
    rng = np.random.default_rng(0)
    y, _ = apply_attack(video, 50.0, "reverse", "mild", rng)
    np.testing.assert_array_equal(y, video[::-1])
    y, fps = apply_attack(video, 50.0, "frame_rate", "strong", rng)
    np.testing.assert_array_equal(y, video[::3])
    assert fps == pytest.approx(50.0 / 3)
    y, fps = apply_attack(video, 50.0, "frame_drop", "mild", rng)
    assert len(y) == 18 and fps == 50.0  # 75 % of 24 frames kept, in order
    assert all(any(np.array_equal(f, g) for g in video) for f in y)
    y, _ = apply_attack(video, 50.0, "temporal_crop", "strong", rng)
    start = next(i for i in range(len(video)) if np.array_equal(video[i], y[0]))
    np.testing.assert_array_equal(y, video[start:start + len(y)])
    assert len(y) == round(0.3 * 24)


def test_affine_identity_shift_zoom_and_mirror():
    x = _blob()
    np.testing.assert_allclose(affine(x), x, atol=1e-6)
    np.testing.assert_allclose(affine(x, dx=3, dy=-2), nd_shift(x, (0, -2, 3), order=1), atol=1e-5)
    c0 = _centroid(x[0])
    moved = _centroid(affine(x, dx=5, dy=0)[0])
    np.testing.assert_allclose(moved - c0, [0, 5], atol=0.05)
    # zoom 1.5 about the centre: the blob's area grows by 1.5^2
    big = affine(_blob(c=(31.5, 31.5)), zoom=1.5)
    assert big[0].sum() / x[0].sum() == pytest.approx(2.25, rel=0.08)
    # a 90 degree rotation of an off-centre blob moves it a quarter turn about the centre
    off = _blob(c=(31.5, 45.5))
    rot = _centroid(affine(off, angle_deg=90)[0]) - 31.5
    assert np.allclose(np.abs(rot), [14, 0], atol=0.3)
    y, _ = apply_attack(x, 50.0, "mirror", "mild", np.random.default_rng(0))
    np.testing.assert_array_equal(y, x[:, :, ::-1])


def test_translate_and_zoom_strengths_are_the_documented_sizes():
    x = _blob(size=112, c=(55.5, 55.5), r=10)
    c0 = _centroid(x[0])
    for strength, px in (("mild", 4), ("strong", 8)):
        y, _ = apply_attack(x, 50.0, "translate", strength, np.random.default_rng(3))
        assert np.linalg.norm(_centroid(y[0]) - c0) == pytest.approx(px, abs=0.1)
    for strength, z in (("mild", 0.08), ("strong", 0.15)):
        scales = set()
        for seed in range(6):  # in or out at random: both occur, each at the documented size
            y, _ = apply_attack(x, 50.0, "zoom", strength, np.random.default_rng(seed))
            ratio = np.sqrt(y[0].sum() / x[0].sum())
            nearest = min((1 - z, 1 + z), key=lambda r: abs(r - ratio))
            assert abs(ratio - nearest) < 0.03
            scales.add(nearest)
        assert scales == {1 - z, 1 + z}


def test_sector_narrowing_blacks_out_the_edges(video):
    y = narrow_sector(video, 0.5)
    h, w = video.shape[1:]
    # beyond half the visible angle, at the sector's edge: nothing left
    yy, xx = np.mgrid[:h, :w]
    theta = np.arctan2((xx + 0.5) / w - 0.5, (yy + 0.5) / h - 0.02)
    lit = video.mean(axis=0) > 0.02
    half = np.abs(theta[lit]).max()
    assert y[:, np.abs(theta) > 0.5 * half + 1e-6].max() == 0
    assert np.array_equal(y[:, np.abs(theta) < 0.4 * half], video[:, np.abs(theta) < 0.4 * half])


def test_jpeg_quality_orders_the_damage(video):
    e30 = np.abs(jpeg(video[:4], 30) - video[:4]).mean()
    e10 = np.abs(jpeg(video[:4], 10) - video[:4]).mean()
    assert 0 < e30 < e10


def test_random_disguise_is_seeded_and_keeps_the_frames(video):
    a = random_disguise(video[:6], np.random.default_rng(5))
    b = random_disguise(video[:6], np.random.default_rng(5))
    c = random_disguise(video[:6], np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, *video.shape[1:]) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert not np.array_equal(a, c) and not np.array_equal(a, video[:6])


def test_strided_disguise_keeps_every_stride_th_frame(video):
    for seed in range(12):
        x = random_disguise(video, np.random.default_rng(seed), fps=50.0, stride=8)
        assert x.shape == (3, *video.shape[1:]) and x.dtype == np.float32
    with pytest.raises(ValueError, match="stride must be >= 1; got 0"):
        random_disguise(video, np.random.default_rng(0), stride=0)


def test_strided_h264_disguise_is_coded_at_the_clip_frame_rate(video, monkeypatch):
    """H.264 drawn for a strided copy codes every frame at the clip's rate and keeps every
    stride-th frame afterwards: what a copy re-encoded at its own frame rate looks like, not
    a clip of every 8th frame coded alone (a far milder round trip)."""
    import echoaudit.data.attacks as attacks

    only = {n: (1.0 if n == "compression" else 0.0) for n in attacks.DISGUISE_PROBABILITIES}
    monkeypatch.setattr(attacks, "DISGUISE_PROBABILITIES", only)
    monkeypatch.setattr(attacks, "H264_SHARE", 1.0)
    got = random_disguise(video, np.random.default_rng(3), fps=50.0, stride=4)
    replay = np.random.default_rng(3)
    replay.random(len(only)), replay.random()
    crf = int(replay.integers(28, 51))
    np.testing.assert_allclose(got, h264(video, 50.0, crf=crf)[::4], atol=1e-6)
    assert not np.allclose(got, h264(video[::4], 12.5, crf=crf), atol=1e-3)


def test_bad_attack_names_are_refused(video):
    with pytest.raises(ValueError, match="family must be one of translate, zoom"):
        apply_attack(video, 50.0, "melt", "mild", np.random.default_rng(0))
    with pytest.raises(ValueError, match="strength must be one of mild, strong; got 'extreme'"):
        apply_attack(video, 50.0, "zoom", "extreme", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"frames must be \(T, H, W\) with T >= 2"):
        apply_attack(video[0], 50.0, "zoom", "mild", np.random.default_rng(0))
    assert set(TEMPORAL_FAMILIES) | set(SPATIAL_FAMILIES) == set(ATTACK_FAMILIES)


@pytest.mark.parametrize("t,fps,want", [(64, 50.0, 32), (20, 50.0, 10), (22, 50 / 3, 32), (40, 25.0, 32), (8, 25.0, 8)])
def test_conform_clip_resamples_then_cuts(t, fps, want):
    x = np.arange(t, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    y = conform_clip(x, fps, ClipSpec(25.0, 32))
    assert len(y) == want
    # the frame shown at time j / 25 s: source frame floor(j * fps / 25)
    np.testing.assert_array_equal(y[:, 0, 0], np.minimum(np.floor(np.arange(want) * fps / 25 + 1e-9), t - 1))


def test_clip_spec_checks_its_values():
    with pytest.raises(ValueError, match=r"ClipSpec.fps must be in \(0, 500\]; got 0"):
        ClipSpec(0, 32)
    with pytest.raises(ValueError, match="ClipSpec.frames must be an int >= 1; got 0"):
        ClipSpec(25.0, 0)
    assert ClipSpec(25.0, 32).describe() == "32 frames at 25 fps (1.28 s)"
