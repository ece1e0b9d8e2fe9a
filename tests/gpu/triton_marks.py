"""Marks for the tests of the Triton kernels: they run on a CUDA device, or on the CPU under Triton's
interpreter (``TRITON_INTERPRET=1``, with ``pip install triton``)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

TRITON_OR_INTERPRETER = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton"),
    pytest.mark.skipif(
        DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1",
        reason="needs a CUDA device, or TRITON_INTERPRET=1 on the CPU",
    ),
]
