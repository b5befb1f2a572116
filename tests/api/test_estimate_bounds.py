"""A gas estimate is EVM work anyone may ask for: it never runs a precompile and stops at a bounded amount of gas."""

from __future__ import annotations

import pytest
import rlp
from eth_utils import keccak, to_canonical_address, to_checksum_address

from ledgerlm.api.chain import ESTIMATE_MAX_GAS

UNIT = 10**18
PAIR = "00" * 192  # one (G1, G2) pair of the bn128 pairing precompile, the point at infinity twice


def _counting_contract(http, client, account, iterations: int) -> str:
    """Deploy code that counts down from `iterations` (26 gas a turn); its address."""
    runtime = bytes.fromhex("62" + iterations.to_bytes(3, "big").hex() + "5b600190038060045700")
    init = bytes.fromhex(f"60{len(runtime):02x}600c600039" f"60{len(runtime):02x}6000f3") + runtime
    client.chain.faucet(account.address, eth_wei=UNIT)
    quote = http.post("/chain/estimate", json={"from": account.address, "to": account.address}).json()
    raw = account.sign_transaction({"data": "0x" + init.hex(), "value": 0, "gas": 200_000, "nonce": quote["nonce"],
                                    "chainId": quote["chain_id"], **quote["fees"]}).raw_transaction
    mined = http.post("/chain/transactions", json={"raw": "0x" + bytes(raw).hex()})
    assert mined.status_code == 200 and mined.json()["status"] == 1, mined.text
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(account.address), quote["nonce"]]))[12:])


@pytest.mark.parametrize("precompile", ["0x0000000000000000000000000000000000000008",
                                        "0x0000000000000000000000000000000000000005",
                                        "0x00000000000000000000000000000000000000ff"])
def test_an_estimate_of_a_call_to_a_precompile_is_refused(http, alice, precompile):
    refused = http.post("/chain/estimate", json={"from": alice.address, "to": precompile, "data": "0x" + PAIR * 60})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["field"] == "to" and "precompile" in refused.json()["error"]["message"]


def test_an_estimate_runs_at_most_its_gas_bound(http, client, alice):
    small = _counting_contract(http, client, alice, 1_000)
    quoted = http.post("/chain/estimate", json={"from": alice.address, "to": small})
    assert quoted.status_code == 200 and 21_000 + 26_000 < quoted.json()["gas"] < ESTIMATE_MAX_GAS, quoted.text

    # A call needing more than the bound (but less than a block) is refused, not run to its end.
    large = _counting_contract(http, client, alice, ESTIMATE_MAX_GAS // 26 + 10_000)
    refused = http.post("/chain/estimate", json={"from": alice.address, "to": large})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["field"] == "data" and "5,000,000 gas" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("extra", "field"), [({"value": -1}, "value"), ({"value": 2**256}, "value"),
                                              ({"data": "zz"}, "data"), ({"data": "0x123"}, "data")])
def test_an_estimate_s_value_and_data_are_checked_naming_the_field(http, alice, extra, field):
    refused = http.post("/chain/estimate", json={"from": alice.address, "to": alice.address, **extra})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == field, refused.text
