import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory):
    """Path of a small complete workspace built from micro models (see tests/micro.py)."""
    from micro import tiny_workspace as build

    return build(tmp_path_factory.mktemp("tiny"))
