"""A node waits on only so many client-signed transactions at once, in all and per sender; past that it says to retry."""

from contextlib import ExitStack

from eth_account import Account

from ledgerlm.node import RELAYS_AT_ONCE, RELAYS_PER_SENDER

UNIT = 10**18


def _quote(http, account) -> dict:
    return http.post("/chain/estimate", json={"from": account.address, "to": account.address, "value": 1}).json()


def _signed(http, account) -> str:
    quote = _quote(http, account)
    raw = account.sign_transaction({"to": account.address, "value": 1, "gas": quote["gas"], "nonce": quote["nonce"],
                                    "chainId": quote["chain_id"], **quote["fees"]}).raw_transaction
    return "0x" + bytes(raw).hex()


def _nonce(http, account) -> int:
    return _quote(http, account)["nonce"]


def test_a_senders_relays_past_its_slots_are_refused_while_other_senders_go_through(http, client, alice, bob):
    for account in (alice, bob):
        client.chain.faucet(account.address, eth_wei=UNIT)
    slots = http.app.state.node.relay_slots
    waiting = [ExitStack() for _ in range(RELAYS_PER_SENDER)]  # alice's transactions that never mine
    for hold in waiting:
        hold.enter_context(slots.hold(alice.address))

    refused = http.post("/chain/transactions", json={"raw": _signed(http, alice)})
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["field"] == "raw" and alice.address in refused.json()["error"]["message"]
    assert _nonce(http, alice) == 0  # nothing was sent
    mined = http.post("/chain/transactions", json={"raw": _signed(http, bob)})
    assert mined.status_code == 200 and mined.json()["status"] == 1, mined.text

    waiting[0].close()
    mined = http.post("/chain/transactions", json={"raw": _signed(http, alice)})
    assert mined.status_code == 200 and mined.json()["status"] == 1, mined.text
    assert slots.waiting() == RELAYS_PER_SENDER - 1  # each relay gave its slot back
    for hold in waiting[1:]:
        hold.close()


def test_relays_past_the_nodes_slots_are_refused_whoever_sends_them(http, client, alice):
    client.chain.faucet(alice.address, eth_wei=UNIT)
    slots = http.app.state.node.relay_slots
    with ExitStack() as waiting:
        for _ in range(RELAYS_AT_ONCE):
            waiting.enter_context(slots.hold(Account.create().address))
        refused = http.post("/chain/transactions", json={"raw": _signed(http, alice)})
        assert refused.status_code == 503 and "try again" in refused.json()["error"]["message"], refused.text
        assert _nonce(http, alice) == 0
    assert http.post("/chain/transactions", json={"raw": _signed(http, alice)}).json()["status"] == 1


def test_bytes_that_are_no_signed_transaction_are_refused_naming_raw(http):
    for raw in ("0x0102", "0x", "0x" + "00" * 200):
        refused = http.post("/chain/transactions", json={"raw": raw})
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "raw", refused.text
