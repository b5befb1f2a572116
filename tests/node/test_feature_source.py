"""The node's attribution index takes its rows from the feature source config.toml names."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ledgerlm.config import ConfigError, Home, NodeConfig
from ledgerlm.node import _attribution_observer

pytest.importorskip("torch")


@pytest.fixture
def tiny(tmp_path):
    from ledgerlm.factory import tiny_random_model

    return tiny_random_model(tmp_path / "tiny", ["What colour is the reef? The reef is copper."])


def test_default_indexes_from_the_final_adapter_and_a_count_collects_that_many_last_epochs(tiny):
    base = SimpleNamespace(path=str(tiny))
    training = SimpleNamespace(epochs=8)
    final = _attribution_observer(NodeConfig().attribution_feature_epochs)(training, base)
    assert final.first_epoch == 8  # no training epoch collected: a pass over the final adapter
    collecting = _attribution_observer(2)(training, base)
    assert collecting.first_epoch == 6  # epochs 7 and 8 (0-based 6, 7) collected inside training
    assert _attribution_observer(20)(training, base).first_epoch == 0  # at most every epoch
    assert final.last_blocks == NodeConfig().attribution_last_blocks == 0  # every block by default
    cut = _attribution_observer(0, 4)(training, base)
    assert (cut.first_epoch, cut.last_blocks) == (8, 4)  # the final-adapter pass, cut to 4 blocks


@pytest.mark.parametrize("name", ["attribution_feature_epochs", "attribution_last_blocks"])
def test_feature_source_settings_round_trip_and_refuse_negatives(tmp_path, name):
    home = Home(tmp_path / "home")
    home.save_config(NodeConfig(**{name: 3}))
    assert getattr(home.load_config(), name) == 3
    home.save_config(NodeConfig(**{name: -1}))
    with pytest.raises(ConfigError) as err:
        home.load_config()
    assert err.value.field == name


def test_per_token_answers_are_off_by_default_and_reach_the_index_the_node_builds(tmp_path, tiny):
    base = SimpleNamespace(path=str(tiny))
    training = SimpleNamespace(epochs=2)
    assert _attribution_observer(0)(training, base).per_token_query is False
    observer = _attribution_observer(0, 0, True)(training, base)
    assert observer.per_token_query and observer.restricted(0).per_token_query
    home = Home(tmp_path / "home")
    home.save_config(NodeConfig(attribution_per_token=True))
    assert home.load_config().attribution_per_token is True
    home.config_path.write_text(home.config_path.read_text().replace(
        "attribution_per_token = true", "attribution_per_token = 1"))
    with pytest.raises(ConfigError) as err:
        home.load_config()
    assert err.value.field == "attribution_per_token"


def test_the_projection_width_reaches_the_collector_and_must_be_positive(tmp_path, tiny):
    base = SimpleNamespace(path=str(tiny))
    training = SimpleNamespace(epochs=2)
    assert _attribution_observer(0)(training, base).dim == NodeConfig().attribution_dim == 8192
    assert _attribution_observer(0, 0, False, 2048)(training, base).dim == 2048
    home = Home(tmp_path / "home")
    home.save_config(NodeConfig(attribution_dim=2048))
    assert home.load_config().attribution_dim == 2048
    home.save_config(NodeConfig(attribution_dim=0))
    with pytest.raises(ConfigError) as err:
        home.load_config()
    assert err.value.field == "attribution_dim"
