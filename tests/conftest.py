"""Shared test settings: fixed seeds and threads, so results do not depend on the machine."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("UNET_LESSONS_NUM_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
