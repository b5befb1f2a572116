"""Economy test helpers: funded consumers with standing caps, and receipts written as serving writes them."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from ledgerlm.chain import cap_nonce
from ledgerlm.economy import FeeShares, add_spent, open_epoch, split_fee
from ledgerlm.economy.earnings import record_spending_cap
from ledgerlm.identity import typed_data
from ledgerlm.serving.receipts import receipt_message
from ledgerlm.store.schema import receipts

SHARES = FeeShares(500, 4000, 4500, 1000)


@contextmanager
def slow_chain(node, wait: float = 0.5):
    """The embedded chain stops mining while inside, and the node waits only `wait` seconds for a receipt: a
    transaction sent meanwhile is "sent but not mined" (504). Leaving mines it."""
    tester = node.chain.w3.provider.ethereum_tester
    timeout = node.chain.receipt_timeout
    tester.disable_auto_mine_transactions()
    node.chain.receipt_timeout = wait
    try:
        yield tester
    finally:
        tester.enable_auto_mine_transactions()
        node.chain.receipt_timeout = timeout
    tester.mine_blocks(1)


def key(label: str):
    return Account.from_key(keccak(text=f"economy-tests:{label}"))


def fund_consumer(node, consumer, deposit: int, cap: int) -> None:
    """Gas and LGR from the faucet account, a deposit into escrow and a standing cap for the node."""
    c = node.contracts
    node.chain.send_eth(node.faucet_account, consumer.address, 10**18)
    c.token.transfer(node.faucet_account, consumer.address, deposit)
    c.escrow.deposit(consumer, deposit)
    give_cap(node, consumer, cap)


def give_cap(node, consumer, cap: int) -> dict:
    """The consumer signs a standing cap for the node; the node checks, relays and records it."""
    c = node.contracts
    deadline = node.chain.head().timestamp + 30 * 24 * 3600
    signed = c.escrow.sign_spending_cap(consumer, node.account.address, cap, cap_nonce(), deadline)
    return record_spending_cap(node.db, c.escrow, node.account, consumer=consumer.address,
                               settler=node.account.address, cap=cap, nonce=signed.nonce, deadline=deadline,
                               signature="0x" + signed.signature.hex())


def write_receipt(node, consumer: str, fee: int, developer: str, *, datanet: str | None = None,
                  contributors: dict[str, int] | None = None, evidence_bps: int = 0,
                  attribution: dict | None = None) -> str:
    """One final receipt in the open epoch, split with the real fee split (`attribution` as serving stores it:
    `{"contributions": [{"contribution_id", "contributor", "bps"}]}`)."""
    payouts = split_fee(fee, SHARES, node=node.account.address, developer=developer, datanet=datanet,
                        contributor_bps=contributors, evidence_bps=evidence_bps)
    rid = uuid.uuid4().hex
    now = int(time.time())
    with node.db.begin() as conn:
        epoch = open_epoch(conn)
        add_spent(conn, consumer, epoch, fee)
        row = dict(id=rid, epoch=epoch, consumer=consumer, model_id="m1", adapter_sha256=None, prompt_tokens=10,
                   completion_tokens=10, price_per_1k="1", fee=str(fee), fee_policy=SHARES.to_dict(),
                   payouts=[p.to_dict() for p in payouts], datanet_roots=[], attribution=attribution, state="final",
                   request=None, created_at=now, finalized_at=now)
        row["body"], row["signature"] = sign_receipt(node, row)
        conn.execute(receipts.insert().values(**row))
    return rid


def sign_receipt(node, row: dict) -> tuple[dict, str]:
    """The signed body and the node's signature of a receipt row, as serving signs them."""
    body = receipt_message(row, node.account.address)
    signed = node.account.sign_message(encode_typed_data(full_message=typed_data("InferenceReceipt", body,
                                                                                 node.domain)))
    return body, "0x" + signed.signature.hex().removeprefix("0x")


class Crash(Exception):
    """The node's death at a step of the close."""


def plan_and_crash(node) -> None:
    """The close is planned, then the node dies before settling."""
    import pytest

    def crash_after_plan(number: int, step: str) -> None:
        if step == "plan":
            raise Crash

    node.economy.after_step = crash_after_plan
    with pytest.raises(Crash):
        node.economy.close()
    node.economy.after_step = None
