import hashlib

import numpy as np
import pandas as pd
import pytest

from echoaudit.audit.image_quality import box_blur, psnr
from echoaudit.cli import main
from echoaudit.data.phantom import (
    VIEWS, PhantomConfig, generate_phantom, render_video, sample_acquisition, sample_anatomy,
)


def _tree_hash(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_patient_splits(tmp_path):
    cfg = PhantomConfig(n_patients=8, videos_per_patient=2, frames=8, seed=3)
    a = generate_phantom(tmp_path / "a", cfg)
    b = generate_phantom(tmp_path / "b", cfg)
    assert _tree_hash(a) == _tree_hash(b)
    c = generate_phantom(tmp_path / "c", PhantomConfig(n_patients=8, videos_per_patient=2, frames=8, seed=4))
    assert _tree_hash(a) != _tree_hash(c)

    table = pd.read_csv(a / "FileList.csv")
    assert len(table) == 16
    assert table.groupby("PatientID")["Split"].nunique().max() == 1  # no patient in two splits
    assert set(table["Split"]) <= {"TRAIN", "VAL", "TEST"}
    assert (table["NumberOfFrames"] == 8).all() and (table["FrameHeight"] == 112).all()
    assert np.allclose(table["EF"], 100 * (1 - table["ESV"] / table["EDV"]), atol=0.01)


def test_patient_anatomy_is_shared_and_videos_differ():
    a0 = sample_anatomy(0, "a4c", 5)
    assert a0 == sample_anatomy(0, "a4c", 5)
    assert a0 != sample_anatomy(0, "a4c", 6)
    f1, _ = render_video(a0, sample_acquisition(0, "a4c", 5, 0), frames=4)
    f2, _ = render_video(a0, sample_acquisition(0, "a4c", 5, 1), frames=4)
    assert f1.shape == (4, 112, 112) and f1.dtype == np.uint8
    assert not np.array_equal(f1, f2)


def test_ef_labels_spread_over_clinical_range():
    efs = [render_video(sample_anatomy(0, "a4c", p), sample_acquisition(0, "a4c", p, 0), frames=2)[1]["EF"]
           for p in range(200)]
    assert np.percentile(efs, 5) < 35 and np.percentile(efs, 95) > 70
    assert min(efs) >= 10 and max(efs) <= 90


def test_ventricle_beats():
    anat = sample_anatomy(1, "a4c", 0)
    frames, labels = render_video(anat, sample_acquisition(1, "a4c", 0, 0), frames=64)
    x = frames.astype(float) / 255
    # Motion: successive frames differ beyond speckle flicker in the LV region over a cycle.
    cx, cy = int(anat.lv_center[0] * 112), int(anat.lv_center[1] * 112)
    roi = x[:, cy - 12 : cy + 12, cx - 8 : cx + 8].mean(axis=(1, 2))
    assert roi.max() - roi.min() > 0.03
    assert 15 < labels["EF"] < 85


def test_speckle_is_kept_box_blur_stays_under_26_db():
    """The VAE bar is met by the model, never by smoothing the data."""
    vids = [render_video(sample_anatomy(0, v, p), sample_acquisition(0, v, p, 0), frames=8)[0]
            for v in VIEWS for p in range(2)]
    x = np.concatenate(vids).astype(np.float64) / 255
    assert psnr(x, box_blur(x, 3)) < 26.0


def test_views_are_visibly_different():
    means = {}
    for v in VIEWS:
        vids = [render_video(sample_anatomy(0, v, p), sample_acquisition(0, v, p, 0), frames=4)[0] for p in range(6)]
        means[v] = np.mean(np.concatenate(vids).astype(float) / 255, axis=0)
    for a in VIEWS:
        for b in VIEWS:
            if a < b:
                assert np.abs(means[a] - means[b]).mean() > 0.02, (a, b)


@pytest.mark.parametrize("kwargs, match", [
    (dict(view="plax"), "view must be one of"),
    (dict(frames=1), "frames must be >= 2"),
    (dict(size=8), "size must be between"),
    (dict(split_fractions=(0.5, 0.5, 0.5)), "split_fractions"),
    (dict(n_patients=2**40), "n_patients must be at most 100000"),
    (dict(videos_per_patient=1000), "videos_per_patient must be at most 100"),
    (dict(frames=10**6), "frames must be at most 10000"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhantomConfig(**kwargs)


def test_cli_phantom_with_montage(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["phantom", "--out", str(out), "--patients", "3", "--videos-per-patient", "1",
                 "--frames", "6", "--montage", str(tmp_path / "m.png"), "--montage-videos", "2"]) == 0
    assert (out / "FileList.csv").exists() and (tmp_path / "m.png").stat().st_size > 1000
    # A second run refuses to overwrite, changes nothing, and says why.
    before = _tree_hash(out)
    assert main(["phantom", "--out", str(out), "--patients", "3"]) == 2
    assert "FileList.csv" in capsys.readouterr().err
    assert _tree_hash(out) == before
    assert main(["phantom", "--out", str(tmp_path / "x"), "--view", "plax"]) == 2
    assert not (tmp_path / "x").exists()


def test_smaller_set_is_a_consistent_subset():
    from echoaudit.data.phantom import phantom_rows

    small = {r[0]: (r[1], r[2]) for r in phantom_rows(PhantomConfig(n_patients=10, videos_per_patient=2))}
    big = {r[0]: (r[1], r[2]) for r in phantom_rows(PhantomConfig(n_patients=40, videos_per_patient=3))}
    assert all(big[name] == v for name, v in small.items())
    assert len({s for _, s in big.values()}) == 3


def test_parallel_rendering_gives_the_same_bytes(tmp_path):
    cfg = PhantomConfig(n_patients=3, videos_per_patient=2, frames=6, seed=1)
    a = generate_phantom(tmp_path / "a", cfg, workers=1)
    b = generate_phantom(tmp_path / "b", cfg, workers=2)
    assert _tree_hash(a) == _tree_hash(b)
