"""Imputation tests run single-threaded: on a shared 2-core machine OpenMP spinning across two
threads makes the small recurrent matmuls up to 100x slower. Restored after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
