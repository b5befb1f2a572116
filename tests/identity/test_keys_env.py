"""LEDGERLM_KDF_ITERATIONS, the test suites' speed setting, cannot make new keystores cheap to crack."""

from __future__ import annotations

import pytest

from ledgerlm.identity.keys import MIN_KDF_ITERATIONS, create_keystore


@pytest.mark.parametrize("value", ["1", "3", "512", "1000", "abc", "²"])
def test_a_kdf_cost_below_the_minimum_or_not_a_power_of_two_is_refused_naming_it(tmp_path, monkeypatch, value):
    monkeypatch.setenv("LEDGERLM_KDF_ITERATIONS", value)
    with pytest.raises(Exception, match="LEDGERLM_KDF_ITERATIONS must be a power of two") as refused:
        create_keystore(tmp_path / "k.json", "passphrase")
    assert refused.value.field == "LEDGERLM_KDF_ITERATIONS" and not (tmp_path / "k.json").exists()


def test_the_minimum_kdf_cost_is_what_a_new_keystore_gets(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("LEDGERLM_KDF_ITERATIONS", str(MIN_KDF_ITERATIONS))
    create_keystore(tmp_path / "k.json", "passphrase")
    assert json.loads((tmp_path / "k.json").read_text())["crypto"]["kdfparams"]["n"] == MIN_KDF_ITERATIONS
