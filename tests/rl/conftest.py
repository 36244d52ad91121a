"""Helpers for the DDPG tests: tiny configs, a one-thread torch for the driver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture()
def one_torch_thread() -> Iterator[None]:
    """The local learner runs in the test process: one intra-op thread is ~10x faster on a
    busy 2-core machine than two. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
