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


def test_feature_epochs_round_trip_and_refuse_negatives(tmp_path):
    home = Home(tmp_path / "home")
    home.save_config(NodeConfig(attribution_feature_epochs=3))
    assert home.load_config().attribution_feature_epochs == 3
    home.save_config(NodeConfig(attribution_feature_epochs=-1))
    with pytest.raises(ConfigError) as err:
        home.load_config()
    assert err.value.field == "attribution_feature_epochs"
