"""VideoPrefetcher: the same videos as dataset.load, in any access order, errors included."""

import numpy as np
import pytest

from echoaudit.data.echonet import EchoNetDataset, EchoNetWriter
from echoaudit.data.prefetch import VideoPrefetcher
from echoaudit.errors import DatasetError, VideoError


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("pf") / "data"
    rng = np.random.default_rng(0)
    with EchoNetWriter(root) as w:
        for i in range(7):
            w.add(f"v{i}", rng.integers(0, 255, (6, 32, 32), dtype=np.uint8), 25.0, ef=50.0 + i, split="TRAIN",
                  patient_id=f"p{i}")
    return EchoNetDataset.open(root)


def test_same_frames_as_load_in_order_and_with_skips(ds):
    direct = [ds.load(i, size=16).frames for i in range(len(ds))]
    with VideoPrefetcher(ds, ahead=3, workers=2, size=16) as pf:
        for i in range(len(ds)):
            np.testing.assert_array_equal(pf.get(i).frames, direct[i])
    with VideoPrefetcher(ds, ahead=2, size=16) as pf:  # a resumed build skips items
        for i in (4, 6, 1, 1):
            np.testing.assert_array_equal(pf.get(i).frames, direct[i])


def test_errors_reach_the_caller_of_that_video(ds, tmp_path):
    broken = EchoNetDataset.open(ds.root)
    path = broken.table.at[2, "path"]
    data = open(path, "rb").read()
    try:
        open(path, "wb").write(data[: len(data) // 2])  # truncated video 2
        with VideoPrefetcher(broken, ahead=4) as pf:
            pf.get(0), pf.get(1)  # video 2 was decoded (and failed) in the background meanwhile
            with pytest.raises(VideoError, match="truncated"):
                pf.get(2)
            assert pf.get(3).frames.shape[0] == 6
            with pytest.raises(DatasetError, match="out of range"):
                pf.get(len(broken))
    finally:
        open(path, "wb").write(data)


def test_bad_arguments():
    with pytest.raises(ValueError, match="ahead >= 0"):
        VideoPrefetcher([], ahead=-1)
