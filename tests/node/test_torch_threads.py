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


@pytest.mark.parametrize("line, field, words", [
    ('storage_quota_byte = 1024', "storage_quota_byte", "did you mean 'storage_quota_bytes'"),
    ('trusted_proxies = ["10.0.0.1", "10.0.0.2"]', "trusted_proxies", "comma-separated"),
    ('serving_base_price = "²"', "serving_base_price", "whole number"),
    ('port = 70000', "port", "between 1 and 65535"),
    ('port = true', "port", "not true or false"),
    ('host = 5', "host", "must be a string"),
])
def test_a_config_value_that_would_break_the_node_later_is_refused_when_read(home, line, field, words):
    """Each of these loaded without a word, then broke every chat call (a list of proxies, a superscript price),
    the server's start after its start-up work (a port past 65535), or silently kept a default (a typo)."""
    text = home.config_path.read_text()
    key = line.split(" = ")[0]
    kept = [row for row in text.splitlines() if not row.startswith(f"{key} =")]
    home.config_path.write_text("\n".join([line, *kept]) + "\n")
    with pytest.raises(ConfigError, match=words) as refused:
        home.load_config()
    assert refused.value.field == field


def test_a_price_written_unquoted_as_earlier_versions_read_it_still_loads(home):
    text = [row for row in home.config_path.read_text().splitlines() if not row.startswith("serving_base_price =")]
    home.config_path.write_text("\n".join(["serving_base_price = 1000", *text]) + "\n")
    assert home.load_config().serving_base_price == "1000"
