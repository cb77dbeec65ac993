import numpy as np
import pytest

from echoaudit.data.echonet import EchoNetDataset
from echoaudit.data.phantom import PhantomConfig, generate_phantom
from echoaudit.errors import CheckpointError, IndexMismatchError
from echoaudit.latents import LatentCache, augment_video, encode_dataset
from echoaudit.models.vae import FrameVAE, build_vae


def test_encode_dataset_round_trip(tmp_path):
    data = generate_phantom(tmp_path / "d", PhantomConfig(n_patients=3, videos_per_patient=1, frames=6, size=32))
    ds = EchoNetDataset.open(data)
    vae = FrameVAE(build_vae((8, 8, 8, 8), sample_size=32), fingerprint="abc")
    cache = encode_dataset(ds, vae, tmp_path / "c", size=32, seed=1, augment_copies=3, augment_stride=4)
    assert cache.latents.shape == (3, 6, 4, 4, 4) and cache.augmented.shape == (3, 3, 2, 4, 4, 4)
    assert cache.latents.dtype == np.float16 and cache.augment_stride == 4
    np.testing.assert_allclose(cache.latents[1], vae.encode(ds.load(1, size=32).frames).numpy(), atol=2e-3)
    # copy frame j holds video frame 4 j, disguised: close to the original's latent, not equal
    d = np.abs(cache.augmented[:, :, 1].astype(np.float32) - cache.latents[:, None, 4].astype(np.float32))
    assert d.mean() > 1e-3
    assert not np.allclose(cache.augmented[:, 0], cache.augmented[:, 1])  # copies differ from each other
    assert list(cache.table["FileName"]) == ds.names
    again = encode_dataset(ds, vae, tmp_path / "c2", size=32, seed=1, augment_copies=4, augment_stride=4)
    # seeded per (video, copy): the first 3 of 4 copies are the 3 copies of the first cache
    assert np.array_equal(np.asarray(again.augmented)[:, :3], np.asarray(cache.augmented))
    with pytest.raises(IndexMismatchError, match="re-encode"):
        LatentCache.load(tmp_path / "c", expected_vae="other")
    with pytest.raises(CheckpointError, match="missing or corrupt"):
        LatentCache.load(tmp_path / "nothing")


def test_augment_video_is_a_small_change():
    x = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    y = augment_video(x, np.random.default_rng(1))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert 0 < np.abs(y - x).mean() < 0.5
