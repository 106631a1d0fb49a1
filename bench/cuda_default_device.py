"""pytest plugin for the GPU check (`-p cuda_default_device`, bench/ on PYTHONPATH): the
test suite's models and tensors are made on EP_TEST_DEVICE (default cuda) by making it
torch's default device, so the model tests run unchanged on a GPU. Tensors a test
places on the CPU explicitly stay there."""

from __future__ import annotations

import os

import torch


def pytest_configure(config) -> None:
    torch.set_default_device(os.environ.get("EP_TEST_DEVICE", "cuda"))
