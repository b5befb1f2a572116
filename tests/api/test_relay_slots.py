"""A node waits on only so many client-signed transactions at once; past that it says to retry."""

from ledgerlm.node import RELAYS_AT_ONCE

UNIT = 10**18


def test_a_relay_past_the_nodes_slots_is_refused_and_goes_through_once_one_frees(http, client, alice):
    client.chain.faucet(alice.address, eth_wei=UNIT)
    quote = http.post("/chain/estimate", json={"from": alice.address, "to": alice.address, "value": 1}).json()
    raw = alice.sign_transaction({"to": alice.address, "value": 1, "gas": quote["gas"], "nonce": quote["nonce"],
                                  "chainId": quote["chain_id"], **quote["fees"]}).raw_transaction
    slots = http.app.state.node.relay_slots
    held = [slots.acquire(blocking=False) for _ in range(RELAYS_AT_ONCE)]  # relays waiting on a slow chain
    assert all(held) and not slots.acquire(blocking=False)

    refused = http.post("/chain/transactions", json={"raw": "0x" + bytes(raw).hex()})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["field"] == "raw" and "try again" in refused.json()["error"]["message"]
    assert http.post("/chain/estimate", json={"from": alice.address, "to": alice.address,
                                              "value": 1}).json()["nonce"] == quote["nonce"]  # nothing sent

    slots.release()
    mined = http.post("/chain/transactions", json={"raw": "0x" + bytes(raw).hex()})
    assert mined.status_code == 200 and mined.json()["status"] == 1, mined.text
    assert slots.acquire(blocking=False) and not slots.acquire(blocking=False)  # the relay gave its slot back
    for _ in range(RELAYS_AT_ONCE):
        slots.release()
