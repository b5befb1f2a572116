"""The node fixes torch's CPU thread count from config.toml instead of taking every core."""

from __future__ import annotations

import os

import pytest

from ledgerlm.config import ConfigError, Home, NodeConfig
from ledgerlm.node import set_torch_threads


@pytest.fixture
def restore_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_configured_thread_count_is_applied(restore_threads):
    import torch

    assert set_torch_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert set_torch_threads(0) == max(1, (os.cpu_count() or 2) // 2) == torch.get_num_threads()


def test_torch_threads_round_trips_through_config_and_refuses_negatives(tmp_path):
    home = Home(tmp_path / "home")
    home.save_config(NodeConfig(torch_threads=3))
    assert home.load_config().torch_threads == 3
    assert "torch_threads = 3" in home.config_path.read_text()
    home.save_config(NodeConfig(torch_threads=-1))
    with pytest.raises(ConfigError) as err:
        home.load_config()
    assert err.value.field == "torch_threads"
