"""The build's calibration parts: held-out videos scored on clips of the synthetic spec,
the by-patient calibration / check split in the manifest (version 3), and version-2
workspaces that still open and say "not measured"."""

import json
import shutil

import numpy as np
import pytest

from echoaudit.audit.calibration import calibrate, calibration_split
from echoaudit.audit.temporal import sample_spread_over_patients
from echoaudit.build import (
    MANIFEST_VERSION, BuildConfig, build_clip_spec, clip_load_kwargs, generator_fps, temporal_sample,
)
from echoaudit.data.clips import ClipSpec, conform_clip
from echoaudit.workspace import Workspace, clip_source_frames


@pytest.fixture(scope="module")
def ws(tiny_workspace):
    return Workspace(tiny_workspace)


@pytest.mark.parametrize("clip", [ClipSpec(fps=50.0, frames=8), ClipSpec(fps=25.0, frames=9), ClipSpec(fps=12.5, frames=4)])
def test_clip_loading_equals_conform_clip_then_stride(ws, clip):
    """What the build loads for a held-out video is conform_clip(video)[::frame_stride]."""
    stride = 2
    kwargs, keep = clip_load_kwargs(clip, stride)
    got = ws.heldout.load(0, size=ws.size, **kwargs).frames[:keep]
    video = ws.heldout.load(0, size=ws.size)
    ref = conform_clip(video.frames, video.fps, clip)[::stride]
    np.testing.assert_array_equal(got, ref)
    assert clip_load_kwargs(None, 3) == ({"frame_step": 3}, None)


@pytest.mark.parametrize(("fps", "n"), [(50.0, 64), (25.0, 16), (30.0, 7), (12.5, 40)])
@pytest.mark.parametrize("clip", [ClipSpec(fps=25.0, frames=32), ClipSpec(fps=50.0, frames=8)])
def test_clip_source_frames_name_the_stored_frames(fps, n, clip):
    """conform_clip of a video whose frame t shows the number t: exactly those numbers."""
    video = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 2, 2))
    shown = conform_clip(video, fps, clip)[:, 0, 0].astype(np.int64)
    np.testing.assert_array_equal(clip_source_frames(fps, clip, n), shown)
    np.testing.assert_array_equal(clip_source_frames(fps, clip)[: len(shown)], shown)  # length unknown


def test_clip_spec_of_a_build(tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    assert generator_fps(gen) is None
    (gen / "model_index.json").write_text(json.dumps({"fps": 50.0}))
    assert generator_fps(gen) == 50.0
    (gen / "training.json").write_text(json.dumps({"fps": 12.5}))
    assert generator_fps(gen) == 12.5  # training.json first
    cfg = BuildConfig(synthetic_frames=16)
    assert build_clip_spec(cfg) == ClipSpec(fps=25.0, frames=16)
    assert build_clip_spec(cfg, {"g": gen}) == ClipSpec(fps=12.5, frames=16)
    assert build_clip_spec(BuildConfig(synthetic_frames=16, clip_fps=30.0), {"g": gen}) == ClipSpec(fps=30.0, frames=16)


def test_manifest_records_clip_and_split(ws):
    m = ws.manifest
    assert m["version"] == MANIFEST_VERSION == 3
    # the micro generators were trained at the phantom's default 50 fps, on 8-frame clips
    assert m["clip"] == {"fps": 50.0, "frames": 8} and ws.clip_spec == ClipSpec(fps=50.0, frames=8)
    split = ws.calibration_split
    assert split == calibration_split(ws.heldout.names, [str(p) for p in ws.heldout.patients],
                                      seed=m["build"]["seed"], fraction=m["build"]["calibration_fraction"])
    assert split.calibration and split.check
    # held-out videos (16 frames at 25 fps) were scored on 8-frame clips at 50 fps, every 2nd
    # frame queried: clip frames 0, 2, 4, 6 = stored frames 0, 1, 2, 3 (frame numbers stay
    # those of the stored video, so frame / FPS is a time)
    assert set(ws.heldout_scores["best_query_frame"]) <= {0, 1, 2, 3}
    real = ws.temporal[ws.temporal["set"] == "real held-out"]
    assert sorted(real.groupby("video")["frame"].apply(tuple).unique()) == [(0, 1, 2, 3)]


def test_query_conforms_an_upload_and_names_its_frames(ws):
    video = ws.heldout.load(0, size=ws.size)
    res = ws.query(video.frames, "h", fps=video.fps)
    np.testing.assert_array_equal(res.frames, [0, 1, 2, 3])
    stored = ws.heldout_scores[ws.heldout_scores["query"] == ws.heldout.names[0]]
    assert res.per_train["score"].iloc[0] == pytest.approx(stored["score"].max(), abs=1e-4)
    assert set(res.per_train["best_query_frame"]) <= {0, 1, 2, 3}
    raw = ws.query(video.frames, "h")  # no fps: the frames as given, every 2nd queried
    np.testing.assert_array_equal(raw.frames, np.arange(0, len(video.frames), 2))


def test_workspace_calibration_uses_the_split(ws):
    cal = ws.calibration(95)
    split = ws.calibration_split
    assert cal.threshold.rule == "heldout_to_train" and cal.threshold.n == len(split.calibration)
    assert cal.check is not None and cal.check["n"] == len(split.check)
    ref = calibrate(ws.heldout_scores, train_videos=ws.train.names, heldout_videos=ws.heldout.names, split=split,
                    n_boot=500, clip=ws.clip_spec)
    assert cal.sentence() == ref.sentence() and ws.threshold(95) == ref.threshold
    assert "clips of 8 frames at 50 fps" in cal.sentence()


def test_version_2_workspace_opens_and_says_not_measured(ws, tmp_path):
    root = tmp_path / "v2"
    shutil.copytree(ws.root, root)
    m = json.loads((root / "manifest.json").read_text())
    m["version"] = 2
    del m["clip"], m["calibration"]
    (root / "manifest.json").write_text(json.dumps(m))
    old = Workspace(root)
    assert old.clip_spec is None and old.calibration_split is None
    cal = old.calibration(95)
    assert cal.check is None and cal.threshold.n == len(old.heldout)
    assert "not measured" in cal.sentence() and "clip length not recorded" in cal.sentence()
    from echoaudit import report as R

    view = R.privacy_view(old, old.synthetic_names[0], cal.value)
    assert view["check"] is None and not view["excess"]["measured"] and "not measured" in view["excess"]["sentence"]


def test_heldout_temporal_curves_are_a_seeded_sample_spread_over_patients(ws):
    """Not the first FileList rows: the build's sample_spread_over_patients of the held-out set."""
    b = ws.manifest["build"]
    names, patients = ws.heldout.names, [str(p) for p in ws.heldout.patients]
    picked = temporal_sample(ws.heldout, b["temporal_heldout"], b["seed"])
    assert picked == sample_spread_over_patients(names, patients, b["temporal_heldout"], seed=b["seed"])
    real = ws.temporal[ws.temporal["set"] == "real held-out"]
    assert set(real["video"]) == set(picked) and len(picked) == min(b["temporal_heldout"], len(names))
    patient_of = dict(zip(names, patients))
    assert len({patient_of[v] for v in picked}) == min(len(picked), len(set(patients)))  # one per patient first
    assert picked != names[: len(picked)]  # seeded shuffle, not the file order
    assert temporal_sample(ws.heldout, 0, 0) == []
    with pytest.raises(ValueError, match=r"temporal_heldout must be an integer >= 0 .*got -1"):
        temporal_sample(ws.heldout, -1, 0)


def test_first_frame_embeddings_are_stored_for_every_query_set(ws):
    """The published conventions' input: each query video's first frame, embedded as the engine does."""
    listed = ws.manifest["scores"]["first_frames"]
    assert set(listed) == {"heldout", *ws.synthetic_names}
    for set_name, ds in [("heldout", ws.heldout)] + [(n, ws.synthetic(n)) for n in ws.synthetic_names]:
        names, emb = ws.first_frames(set_name)
        assert names == list(ds.names) and emb.shape == (len(ds), ws.index.dim) and emb.dtype == np.float32
        kwargs, keep = clip_load_kwargs(ws.clip_spec, ws.engine.config.frame_stride)
        for i in (0, len(names) - 1):
            # the clip's queried frames, embedded in one batch as the build does (a batch of
            # one frame alone differs by ~1e-5: float32 convolution kernels depend on batch size)
            clip = ds.load(names[i], size=ws.size, **kwargs).frames[:keep]
            np.testing.assert_allclose(emb[i], ws.engine.embed_frames(clip)[0], atol=1e-6)
    assert ws.first_frames("no_such_set") is None


def test_a_manifest_whose_pending_is_not_a_list_of_names_is_a_clear_error(tiny_workspace, tmp_path):
    from echoaudit.errors import EchoAuditError

    root = tmp_path / "ws"
    shutil.copytree(tiny_workspace, root)
    man = json.loads((root / "manifest.json").read_text())
    man["pending"] = "regular"  # a string would otherwise read as ['r', 'e', 'g', ...]
    (root / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(EchoAuditError, match="pending must be a list of set names"):
        Workspace(root).pending
