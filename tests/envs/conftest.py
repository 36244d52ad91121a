"""One torch thread for these tests: the 2 shared cores are oversubscribed, and intra-op
threads then spin (a 64-unit MLP step went from 3 ms to 180 ms with 2 threads)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
