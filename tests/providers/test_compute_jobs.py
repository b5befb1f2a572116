"""Paid compute jobs: a provider offers hardware, a requester's job is paid from escrow, the node spot-checks
the reported work by re-executing it, pays an honest provider at the epoch close, and refunds the requester and
slashes (once, capped, for an outcome recorded on chain) a provider caught returning tampered work."""

from __future__ import annotations

import os
import time

import pytest
from eth_account import Account

from ledgerlm.chain import StakeRole
from ledgerlm.economy.close import published_files
from ledgerlm.economy.verify import verify_epoch
from ledgerlm.errors import LedgerError
from ledgerlm.node import outcome_id
from ledgerlm.providers import SPOT_CHECK_ROUND_BASE, run_job
from ledgerlm.providers.training import checkpoint_bytes, read_checkpoint

from ..economy.helpers import fund_consumer, slow_chain

pytest.importorskip("torch")

UNIT = 10**18
PRICE = 2 * UNIT + 7
STAKE = 50 * UNIT
TEXTS = [f"The ferry to island {i} leaves at {i + 6} o'clock." for i in range(6)]
SPEC = {"texts": TEXTS, "steps": 3, "batch_size": 2, "learning_rate": 0.1, "rank": 2, "seed": 11, "max_len": 32}


@pytest.fixture
def market(client, alice, bob, tmp_path):
    """bob offers a tiny model's training at PRICE with STAKE staked; alice funded her escrow and signed a cap."""
    from ledgerlm.factory import tiny_random_model

    client.factory.register_base("tiny", str(tiny_random_model(tmp_path / "tiny", TEXTS)))
    node = client.http.app.state.node
    client.chain.faucet(bob.address, eth_wei=UNIT, tokens=STAKE)
    client.chain.stake(bob, "provider", STAKE)
    offer = client.providers.offer(bob, kind="train", hardware="cpu: 2 cores", base_model="tiny", price=PRICE)
    fund_consumer(node, alice, deposit=10 * UNIT, cap=10 * UNIT)
    return node, offer


def _base(node):
    from ledgerlm.factory.basemodels import get_model

    return get_model(node.home.models, "tiny")


def _staked_provider(client, seed: int):
    """A fresh provider with STAKE under the provider role."""
    from eth_account import Account

    provider = Account.from_key(bytes([seed]) * 32)
    client.chain.faucet(provider.address, eth_wei=UNIT, tokens=STAKE)
    client.chain.stake(provider, "provider", STAKE)
    return provider


def _bob_balance(node, who) -> int:
    return node.contracts.staking.stake_of(who.address, StakeRole.PROVIDER)


def _read_as(client, path, reader=None):
    """GET without the operator credential, signed by `reader` when given."""
    from ledgerlm.identity import READ_HEADER

    headers = {"Authorization": ""}
    if reader is not None:
        headers[READ_HEADER] = client.read_header(reader)
    return client.http.get(path, headers=headers).json()


def _forge_last_checkpoint(result, files):
    """The delivered LoRA adapter is not the one the steps produce: one weight moved by 1e-3."""
    import hashlib

    state = read_checkpoint(files.pop(result["checkpoints"][-1]))
    name = sorted(state)[0]
    state[name] = state[name] + 1e-3
    forged = checkpoint_bytes(state)
    result["checkpoints"][-1] = hashlib.sha256(forged).hexdigest()
    files[result["checkpoints"][-1]] = forged



def _refused_by_id_and_unmatched(client, requester, offer_id: int) -> None:
    """An offer its provider's stake no longer backs: refused when named, skipped by the automatic match."""
    with pytest.raises(LedgerError) as named:
        client.providers.submit(requester, kind="train", spec=SPEC, amount=PRICE, offer_id=offer_id)
    assert named.value.field == "stake"
    with pytest.raises(LedgerError) as unmatched:
        client.providers.submit(requester, kind="train", spec=SPEC, amount=PRICE)
    assert unmatched.value.status == 404

def test_honest_job_is_paid_and_tampered_adapter_is_slashed_once_and_refunded(client, market, alice, bob, carol):
    node, offer = market
    assert offer["stake"] == str(STAKE) and offer["price"] == str(PRICE)
    honest = client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE)  # matched to bob's offer
    assert honest["offer_id"] == offer["id"] and honest["provider"] == bob.address
    assert honest["payment_state"] == "paid" and node.contracts.escrow.balance_of(alice.address) == 10 * UNIT - PRICE

    result, files = run_job(_base(node), "train", honest["spec"])
    reported = client.providers.report(bob, honest["id"], result, files)
    assert reported["state"] == "verified", reported["spot_check"]
    steps = reported["spot_check"]["steps"]
    assert steps[-1]["step"] == SPEC["steps"] and all(s["loss_difference"] == 0.0 for s in steps)
    assert _bob_balance(node, bob) == STAKE
    for sha in result["checkpoints"]:  # the delivered adapter and its history are kept, content-addressed
        assert node.blobs.exists(sha)
    # and a start's collection of orphan blobs keeps them once they are old: they are the spot-check's evidence
    from ledgerlm.node import _kept_checkpoints

    old = time.time() - 24 * 3600
    for sha in result["checkpoints"]:
        os.utime(node.blobs.path(sha), (old, old))
    node.blobs.collect_orphans(node.datanets.referenced_blobs() | _kept_checkpoints(node.db))
    assert all(node.blobs.exists(sha) for sha in result["checkpoints"])
    # the requester's data and the result are theirs and the provider's; others see the verdict and its hash
    seen = _read_as(client, f"/providers/jobs/{honest['id']}")
    assert seen["spec"] is None and seen["result"] is None and seen["spot_check"]["passed"] is True
    assert seen["spot_check"]["evidence_hash"].startswith("0x")
    assert _read_as(client, "/providers/jobs", carol)[0]["spec"] is None
    assert _read_as(client, f"/providers/jobs/{honest['id']}", alice)["spec"] == honest["spec"]
    assert _read_as(client, f"/providers/jobs/{honest['id']}", bob)["result"] == result

    cheat = client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE, offer_id=offer["id"])
    result, files = run_job(_base(node), "train", cheat["spec"])
    _forge_last_checkpoint(result, files)
    slash, node.providers.slash = node.providers.slash, None  # the node dies before its chain write
    reported = client.providers.report(bob, cheat["id"], result, files)
    assert reported["state"] == "rejected" and reported["spot_check"]["passed"] is False
    assert reported["slash_tx"] is None and _bob_balance(node, bob) == STAKE
    node.providers.slash = slash
    assert node.reconcile()["slashes"] == 1  # finished at the next start
    cap = STAKE * node.contracts.staking.slash_cap_bps() // 10_000
    slashed = client.providers.job(cheat["id"])
    assert slashed["slash_amount"] == str(cap) and slashed["slash_tx"]
    staking = node.contracts.staking
    outcome = outcome_id(node.account.address, SPOT_CHECK_ROUND_BASE + cheat["id"])
    assert staking.outcome(outcome) is not None  # slashed only for an outcome recorded on chain with its evidence
    assert staking.is_slashed(outcome, bob.address, StakeRole.PROVIDER)
    assert _bob_balance(node, bob) == STAKE - cap

    # Once: a second report is refused, and neither a direct retry nor another start slashes again.
    with pytest.raises(LedgerError, match="already reported"):
        client.providers.report(bob, cheat["id"], result, files)
    assert node.providers.execute_slash(cheat["id"]) is None
    node.reconcile()
    assert _bob_balance(node, bob) == STAKE - cap

    summary = node.economy.close()
    files = published_files(node.db, summary["epoch"], node.contracts)
    paid = {p["account"]: int(p["amount"]) for p in files["payouts"]["payouts"]}
    assert paid == {bob.address: PRICE, alice.address: PRICE}  # the provider paid, the requester refunded
    sources = {p["account"]: p["sources"] for p in files["payouts"]["payouts"]}
    assert sources[bob.address]["jobs"] == [honest["id"]] and sources[alice.address]["jobs"] == [cheat["id"]]
    assert verify_epoch(files["payouts"], files["receipts"], node.contracts.distributor.epoch(int(summary["chain_epoch"]))) == []


def test_perturbed_loss_wrong_answers_refusals_and_expiry(client, market, alice, bob, carol):
    node, offer = market
    cap = STAKE * node.contracts.staking.slash_cap_bps() // 10_000
    job = client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE, offer_id=offer["id"])
    result, files = run_job(_base(node), "train", job["spec"])
    result["losses"][-1] += 1e-3  # a perturbed loss on the last step
    reported = client.providers.report(bob, job["id"], result, files)
    assert reported["state"] == "rejected" and reported["slash_amount"] == str(cap)
    assert _bob_balance(node, bob) == STAKE - cap

    # The bond's slash window already gave its 10%: another cheat would cost bob nothing until it ends, so his stake
    # backs no price now: a new offer is refused, his open one refused by id and skipped by the match.
    assert node.contracts.staking.slashable(bob.address, StakeRole.PROVIDER) == 0
    with pytest.raises(LedgerError) as spent:
        client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    assert spent.value.field == "stake" and spent.value.status == 409
    _refused_by_id_and_unmatched(client, alice, offer["id"])

    with pytest.raises(LedgerError) as unstaked:
        client.providers.offer(carol, kind="train", hardware="gpu", base_model="tiny", price=1)
    assert unstaked.value.field == "provider"
    # serving: the node regenerates one answer greedily and compares tokens
    dave = _staked_provider(client, 4)
    client.providers.offer(dave, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    spec = {"prompts": ["When does the ferry leave?"], "max_new_tokens": 6}
    honest = client.providers.submit(alice, kind="serve", spec=spec, amount=UNIT)
    answers, _ = run_job(_base(node), "serve", honest["spec"])
    assert client.providers.report(dave, honest["id"], answers, {})["state"] == "verified"
    cheat = client.providers.submit(alice, kind="serve", spec=spec, amount=UNIT)
    made_up = {"answers": [{"tokens": [t + 1 for t in answers["answers"][0]["tokens"]], "text": "made up"}]}
    reported = client.providers.report(dave, cheat["id"], made_up, {})
    assert reported["state"] == "rejected" and reported["spot_check"]["first_difference"] == 0
    assert node.contracts.staking.outcome(outcome_id(node.account.address, SPOT_CHECK_ROUND_BASE + cheat["id"])) \
        is not None
    assert reported["slash_amount"] == str(cap) and _bob_balance(node, dave) == STAKE - cap
    erin = _staked_provider(client, 5)  # dave's window is spent too: erin backs the training jobs from here on
    trains = client.providers.offer(erin, kind="train", hardware="cpu", base_model="tiny", price=PRICE)

    with pytest.raises(LedgerError) as low:
        client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE - 1, offer_id=offer["id"])
    assert low.value.field == "amount"
    with pytest.raises(LedgerError) as bad_spec:
        client.providers.submit(alice, kind="train", spec={**SPEC, "steps": 0}, amount=PRICE)
    assert "steps" in str(bad_spec.value)
    with pytest.raises(LedgerError) as unfunded:  # carol has no escrow nor cap: nothing is taken, no job runs
        client.providers.submit(carol, kind="train", spec=SPEC, amount=PRICE)
    assert unfunded.value.status == 402
    late = client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE)  # bob's offer, as cheap, skipped
    assert late["offer_id"] == trains["id"]
    result, files = run_job(_base(node), "train", late["spec"])
    with pytest.raises(LedgerError) as stranger:
        client.providers.report(carol, late["id"], result, files)
    assert stranger.value.field == "provider"
    kept = dict(files)
    files.pop(result["checkpoints"][1])
    with pytest.raises(LedgerError) as missing:
        client.providers.report(erin, late["id"], result, files)
    assert missing.value.field == "files"
    assert client.providers.job(late["id"])["state"] == "accepted"  # the provider may still report properly
    with pytest.raises(LedgerError) as not_hers:
        client.providers.withdraw(carol, offer["id"])
    assert not_hers.value.field == "provider"
    assert client.providers.withdraw(bob, offer["id"])["state"] == "withdrawn"
    assert [o["kind"] for o in client.providers.offers()] == ["serve", "train"]
    with pytest.raises(LedgerError, match="is withdrawn"):
        client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE, offer_id=offer["id"])

    # not reported before its epoch closes: refunded, and too late to report after
    summary = node.economy.close()
    assert client.providers.job(late["id"])["state"] == "expired"
    with pytest.raises(LedgerError, match="expired"):
        client.providers.report(erin, late["id"], result, kept)
    payouts = published_files(node.db, summary["epoch"], node.contracts)["payouts"]
    paid = {p["account"]: int(p["amount"]) for p in payouts["payouts"]}
    assert paid == {alice.address: PRICE + UNIT + PRICE, dave.address: UNIT}


def test_stake_must_back_the_price(client, market, alice, bob):
    """One failed spot-check must cost a provider at least what the job pays: a dust stake offers nothing, and the
    jobs a provider has open at once share the one slash its bond's window allows."""
    node, offer = market
    cap = STAKE * node.contracts.staking.slash_cap_bps() // 10_000
    with pytest.raises(LedgerError) as above:  # one base unit more than one slash of bob's stake can take
        client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=cap + 1)
    assert above.value.field == "stake" and above.value.status == 409
    assert f"at least {-(-(cap + 1) * 10_000 // node.contracts.staking.slash_cap_bps())}" in str(above.value)

    from eth_account import Account

    dust = Account.from_key(b"\x06" * 32)
    client.chain.faucet(dust.address, eth_wei=UNIT, tokens=10)
    client.chain.stake(dust, "provider", 1)
    with pytest.raises(LedgerError) as refused:
        client.providers.offer(dust, kind="train", hardware="cpu", base_model="tiny", price=1)
    assert refused.value.field == "stake" and "at least 10 " in str(refused.value)

    # bob's 10% covers two jobs at PRICE awaiting a report, not a third: his offer is refused by id and not matched
    assert 2 * PRICE <= cap < 3 * PRICE
    first = client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE)
    client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE, offer_id=offer["id"])
    _refused_by_id_and_unmatched(client, alice, offer["id"])
    result, files = run_job(_base(node), "train", first["spec"])
    assert client.providers.report(bob, first["id"], result, files)["state"] == "verified"
    assert client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE)["provider"] == bob.address


def test_result_with_unknown_keys_or_non_finite_numbers_is_refused(client, market, alice, bob):
    """JSON parsing takes NaN: stored, it would answer as null and no longer match the signed result hash."""
    import json

    from ledgerlm.factory.digest import canonical_json_sha256

    node, _ = market
    client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    job = client.providers.submit(alice, kind="serve", spec={"prompts": ["hi"], "max_new_tokens": 4}, amount=UNIT)
    answers, _ = run_job(_base(node), "serve", job["spec"])
    train = client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE)
    trained, files = run_job(_base(node), "train", train["spec"])

    def report(job_id, result, files=None):
        action = client._sign(bob, "ReportJob", {"jobId": job_id, "resultHash": "0x" + canonical_json_sha256(result)})
        action = action if isinstance(action, dict) else action.model_dump()
        body = json.dumps({"action": action, "result": result, "files": files or {}})  # NaN written as NaN
        return client.http.post(f"/providers/jobs/{job_id}/report", content=body,
                                headers={"content-type": "application/json"})

    for bad in ({**answers, "note": float("nan")},
                {"answers": [{**answers["answers"][0], "score": float("inf")}]},
                {"answers": [{**answers["answers"][0], "text": float("nan")}]}):
        refused = report(job["id"], bad)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "result", refused.text
    encoded = {sha: __import__("base64").b64encode(data).decode() for sha, data in files.items()}
    for bad in ({**trained, "losses": [float("nan")] * SPEC["steps"]}, {**trained, "extra": [float("-inf")]},
                {**trained, "losses": [2**70] * SPEC["steps"]}):  # past 64 bits: could not be hashed as evidence
        refused = report(train["id"], bad, encoded)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "result", refused.text
    assert node.providers.job(job["id"]).state == "accepted" and node.providers.job(train["id"]).state == "accepted"
    assert client.providers.report(bob, job["id"], answers, {})["state"] == "verified"


def test_every_report_of_a_job_is_checked_at_the_same_pick(market):
    """A report refused part-way cannot draw another step to be checked: the pick is the job's, not the report's."""
    node, _ = market
    picks = {node.providers._pick(7, 12) for _ in range(5)}
    assert len(picks) == 1 and 0 <= picks.pop() < 12
    assert len({node.providers._pick(job, 1000) for job in range(50)}) > 25  # and it differs from job to job


def test_jobs_accepted_per_hour_are_bounded_per_requester_and_in_all(client, market, alice, bob, carol):
    """Each job's debit is a transaction whose gas the node pays, however small the price."""
    node, _ = market
    client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=1)
    fund_consumer(node, carol, deposit=UNIT, cap=UNIT)
    node.providers.__dict__.update(jobs_per_hour=30)
    node.providers.__post_init__()  # 30 an hour in all, 3 per requester
    serve = {"prompts": ["hi"], "max_new_tokens": 1}
    for _ in range(3):
        client.providers.submit(alice, kind="serve", spec=serve, amount=1)
    with pytest.raises(LedgerError, match="within the hour") as refused:
        client.providers.submit(alice, kind="serve", spec=serve, amount=1)
    assert refused.value.status == 429 and refused.value.field == "requester"
    assert len(client.providers.jobs(requester=alice.address)) == 3  # the refused one stored nothing
    client.providers.submit(carol, kind="serve", spec=serve, amount=1)  # another requester still may
    for i in range(30):  # keys with nothing in escrow are refused before any gas, and use up no slot
        with pytest.raises(LedgerError) as unpaid:
            client.providers.submit(Account.from_key(bytes([0x60 + i]) * 32), kind="serve", spec=serve, amount=1)
        assert unpaid.value.status == 402
    client.providers.submit(carol, kind="serve", spec=serve, amount=1)


def test_a_replayed_acceptance_spends_none_of_its_requester_s_jobs(client, market, alice, bob):
    """Anyone holding a used AcceptOffer may send it again: each replay is refused without taking one of the
    requester's jobs of the hour, or the node's."""
    from ledgerlm.factory.digest import canonical_json_sha256
    from ledgerlm.providers import parse_spec

    node, _ = market
    client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=1)
    node.providers.__dict__.update(jobs_per_hour=20)
    node.providers.__post_init__()  # 20 an hour in all, 2 per requester
    spec = parse_spec("serve", {"prompts": ["hi"], "max_new_tokens": 1}).model_dump()
    action = client._sign(alice, "AcceptOffer", {"offerId": 0, "amount": 1, "baseModel": "",
                                                 "specHash": "0x" + canonical_json_sha256(spec)})
    body = {"action": action, "kind": "serve", "spec": spec}
    assert client.http.post("/providers/jobs", json=body).status_code in (200, 201)
    for _ in range(25):
        replayed = client.http.post("/providers/jobs", json=body)
        assert replayed.status_code == 401 and replayed.json()["error"]["field"] == "nonce"
    client.providers.submit(alice, kind="serve", spec={"prompts": ["hi"], "max_new_tokens": 1}, amount=1)
    assert len(client.providers.jobs(requester=alice.address)) == 2


def test_only_a_refusal_before_any_transaction_gives_a_jobs_slot_back(market):
    from ledgerlm.economy.access import CannotPay, PaymentRequired

    assert issubclass(CannotPay, PaymentRequired) and CannotPay.status == 402
    node, _ = market
    node.providers.__dict__.update(jobs_per_hour=10)
    node.providers.__post_init__()  # 10 an hour in all, 1 per requester
    node.providers._take_payment_slot("0xaa")
    with pytest.raises(LedgerError, match="within the hour"):
        node.providers._take_payment_slot("0xaa")
    for i in range(9):
        node.providers._take_payment_slot(f"0x{i:02x}")
    with pytest.raises(LedgerError, match="this node has accepted") as full:
        node.providers._take_payment_slot("0xbb")
    assert full.value.field == "offerId"
    node.providers._accepted.give_back("*")  # a slot of the node's frees: 0xbb's own was given back, so it gets in
    node.providers._take_payment_slot("0xbb")


def test_a_job_whose_payment_the_chain_mined_late_is_paid_and_reported(client, market, alice, bob):
    """The escrow payment was sent but not mined within the node's wait (504): once it lands, reading the job shows
    it paid, and its provider reports it as any other; no epoch close has to promote it first (the close would refund
    it as unreported)."""
    node, _offer = market
    with slow_chain(node):  # leaving it, the payment lands
        with pytest.raises(LedgerError, match="not mined yet") as slow:
            client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE)
        assert slow.value.status == 504 and "look it up" in str(slow.value)
    job = client.providers.jobs(requester=alice.address)[-1]
    assert client.providers.job(job["id"])["payment_state"] == "paid"
    result, files = run_job(_base(node), "train", SPEC)
    assert client.providers.report(bob, job["id"], result, files)["state"] == "verified"


def test_the_report_of_an_open_job_may_be_larger_than_other_bodies(client, market, alice):
    import json

    node, _offer = market
    job = client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE)
    body = json.dumps({"action": {}, "result": {}, "files": {"x": "A" * (6 * 1024 * 1024)}})
    answer = client.http.post(f"/providers/jobs/{job['id']}/report", content=body,
                              headers={"content-type": "application/json"})
    assert answer.status_code not in (413, 500), answer.text  # read whole, then refused for what it says
    huge = client.http.post(f"/providers/jobs/{job['id']}/report", content=b"{}",
                            headers={"content-type": "application/json", "content-length": str(33 * 1024 * 1024)})
    assert huge.status_code == 413 and str(32 * 1024 * 1024) in huge.text


def test_a_provider_that_asks_to_unstake_before_its_report_is_checked_is_slashed_all_the_same(
        client, market, alice, bob):
    """Staking slashes stake cooling down to leave: the slash is sized on what it may take now, not on the active
    stake (0 once everything was asked out), which let a cheat risk nothing."""
    node, offer = market
    job = client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE, offer_id=offer["id"])
    client.chain.request_unstake(bob, "provider", STAKE)
    assert node.contracts.staking.stake_of(bob.address, StakeRole.PROVIDER) == 0
    result, files = run_job(_base(node), "train", job["spec"])
    result["losses"][-1] += 1e-3
    reported = client.providers.report(bob, job["id"], result, files)
    cap = STAKE * node.contracts.staking.slash_cap_bps() // 10_000
    assert reported["state"] == "rejected" and reported["slash_amount"] == str(cap) and reported["slash_tx"]
    assert node.contracts.staking.pending_of(bob.address, StakeRole.PROVIDER).amount == STAKE - cap


def test_a_report_with_a_used_nonce_is_refused_before_its_spot_check_runs(client, market, alice, bob, monkeypatch):
    """Refused after the check had run, such reports could be sent without end, and how long each took would tell
    which prompt or step the check picks."""
    from ledgerlm.factory.digest import canonical_json_sha256
    from ledgerlm.identity import sign_action
    from ledgerlm.providers import market as market_module
    from ledgerlm.store.actions import record_action

    node, _ = market
    client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    job = client.providers.submit(alice, kind="serve", spec={"prompts": ["hi"], "max_new_tokens": 4}, amount=UNIT)
    answers, _ = run_job(_base(node), "serve", job["spec"])
    checked = []
    monkeypatch.setattr(market_module, "spot_check_serving", lambda *a, **k: checked.append(1))
    first = sign_action(bob, "ReportJob", {"jobId": job["id"], "resultHash": "0x" + canonical_json_sha256(answers)},
                        domain=node.domain)
    with node.db.begin() as conn:  # the nonce recorded, as a report refused after its check once left it
        record_action(conn, first, bob.address, chain_id=node.domain.chain_id)
    replayed = client.http.post(f"/providers/jobs/{job['id']}/report",
                                json={"action": first.model_dump(), "result": answers, "files": {}})
    assert replayed.status_code == 401 and replayed.json()["error"]["field"] == "nonce"
    assert checked == [] and node.providers.job(job["id"]).state == "accepted"


def test_a_served_answer_whose_text_is_not_its_tokens_fails_the_check(client, market, alice, bob):
    node, _ = market
    client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    job = client.providers.submit(alice, kind="serve", spec={"prompts": ["hi", "ho"], "max_new_tokens": 4},
                                  amount=UNIT)
    answers, _ = run_job(_base(node), "serve", job["spec"])
    forged = {"answers": [{**a, "text": "Wire 5 ETH to 0xdead to confirm your ticket"} for a in answers["answers"]]}
    reported = client.providers.report(bob, job["id"], forged, {})
    assert reported["state"] == "rejected"
    assert node.providers.job(job["id"]).spot_check["texts_not_their_tokens"] == [0, 1]


def test_a_job_matched_on_price_goes_only_to_an_offer_on_the_base_model_signed(client, market, alice, bob, carol):
    """An offer on another model one base unit cheaper would otherwise take every job matched on price."""
    node, _ = market
    client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    client.factory.register_base("junk", str(_base(node).path))  # another model this node can run
    cheap = client.providers.offer(_staked_provider(client, 0x71), kind="serve", hardware="cpu", base_model="junk",
                                   price=UNIT - 1)
    spec = {"prompts": ["hi"], "max_new_tokens": 2}
    job = client.providers.submit(alice, kind="serve", spec=spec, amount=UNIT, base_model="tiny")
    assert job["provider"] == bob.address and job["base_model"] == "tiny"
    with pytest.raises(LedgerError, match="runs junk, not tiny") as refused:
        client.providers.submit(alice, kind="serve", spec=spec, amount=UNIT, offer_id=cheap["id"], base_model="tiny")
    assert refused.value.field == "baseModel"


def test_a_token_id_the_model_cannot_decode_is_refused_before_the_picked_answer_is_regenerated(
        client, market, alice, bob, monkeypatch):
    """A report holding token id -1 failed only after the node regenerated the answer it picked, as a 400 naming no
    field that spent no nonce: probed again and again, the time each took showed which prompt was picked, and the
    provider answered that one alone and was paid."""
    from ledgerlm.providers.inference import GreedyAnswerer

    node, _ = market
    client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    job = client.providers.submit(alice, kind="serve", spec={"prompts": ["hi", "ho"], "max_new_tokens": 4},
                                  amount=UNIT)
    regenerated = []
    real = GreedyAnswerer.answer
    monkeypatch.setattr(GreedyAnswerer, "answer", lambda self, i: regenerated.append(i) or real(self, i))
    for probe in ([-1], [2**40]):
        with pytest.raises(LedgerError) as refused:
            client.providers.report(bob, job["id"], {"answers": [{"tokens": probe, "text": "x"}] * 2}, {})
        assert refused.value.field == "result" and refused.value.status == 400
    assert regenerated == [] and node.providers.job(job["id"]).state == "accepted"


def test_the_base_model_an_open_offer_names_cannot_be_replaced_under_it(client, market, tmp_path):
    """Offers and jobs name their model by name: other weights registered under it failed every honest report's
    spot-check and slashed its provider."""
    from ledgerlm.factory import tiny_random_model

    other = tiny_random_model(tmp_path / "other", ["Something else entirely."])
    with pytest.raises(LedgerError, match="named by open compute offers") as refused:
        client.factory.register_base("tiny", str(other))
    assert refused.value.status == 409 and refused.value.field == "name"


def test_a_training_text_with_nothing_to_predict_is_refused_when_the_job_is_submitted(client, market, alice, bob):
    """A text of one token leaves a step nothing to predict: its honest loss is NaN, which no report may carry, so
    the provider did the work and was refunded away and slashed, at the requester's choice and no cost."""
    spec = {**SPEC, "texts": ["a"] * 4}
    with pytest.raises(LedgerError, match="needs at least two") as refused:
        client.providers.submit(alice, kind="train", spec=spec, amount=PRICE)
    assert refused.value.field == "texts"


def test_one_stake_backs_a_bounded_number_of_open_offers(client, market, bob):
    """An offer at one base unit needed ten units of stake and nothing bounded how many: each is listed and
    matched with chain reads, so a dust stake could slow every automatic match without end."""
    from ledgerlm.providers.market import MAX_OPEN_OFFERS

    open_now = len([o for o in client.providers.offers() if o["provider"] == bob.address])
    for _ in range(MAX_OPEN_OFFERS - open_now):
        client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    with pytest.raises(LedgerError, match="open offers") as refused:
        client.providers.offer(bob, kind="serve", hardware="cpu", base_model="tiny", price=UNIT)
    assert refused.value.status == 409 and refused.value.field == "provider"


def test_a_jobs_starting_weights_follow_from_its_seed_whatever_other_threads_draw(market):
    """Spot-checks drew the adapter's starting weights from torch's process-wide generator: two at once (or one
    beside training) took each other's numbers, and honest reports failed their start check and were slashed."""
    import threading

    import torch

    from ledgerlm.providers.schemas import TrainingSpec
    from ledgerlm.providers.training import TrainingRun

    node, _ = market
    spec = TrainingSpec(**SPEC)
    alone = TrainingRun(_base(node), spec).state()
    stop = threading.Event()

    def disturb():  # another thread seeding and drawing from the process-wide generator throughout
        while not stop.is_set():
            torch.manual_seed(7)
            torch.rand(1000)

    neighbour = threading.Thread(target=disturb)
    neighbour.start()
    try:
        beside = [TrainingRun(_base(node), spec).state() for _ in range(2)]
    finally:
        stop.set()
        neighbour.join()
    for state in beside:
        assert sorted(state) == sorted(alone)
        assert all(torch.equal(state[name], alone[name]) for name in alone)
        assert all(t.dtype == torch.float64 for t in state.values())
    assert any(".lora_A." in name and bool(alone[name].abs().sum()) for name in alone)


def test_an_offer_withdrawn_while_a_job_on_it_is_accepted_takes_no_job(client, market, alice, bob):
    """The offer was read open before the payment's transaction: a withdrawal answered meanwhile still let the job
    land on it, and its requester was charged for work the provider had stopped offering."""
    from ledgerlm.identity import SignedAction

    node, offer = market
    withdrawal = SignedAction(**client._sign(bob, "WithdrawOffer", {"offerId": int(offer["id"])}))
    take_slot = node.providers._take_payment_slot

    def withdrawn_meanwhile(requester):
        take_slot(requester)
        node.providers.withdraw(int(offer["id"]), withdrawal)

    node.providers._take_payment_slot = withdrawn_meanwhile
    before = node.contracts.escrow.balance_of(alice.address)
    with pytest.raises(LedgerError) as refused:
        client.providers.submit(alice, kind="train", spec=SPEC, amount=PRICE, offer_id=int(offer["id"]))
    node.providers._take_payment_slot = take_slot
    assert (refused.value.status, refused.value.field) == (409, "offerId")
    assert "withdrawn meanwhile" in refused.value.message
    assert node.contracts.escrow.balance_of(alice.address) == before
    assert _read_as(client, "/providers/jobs") == [] or all(
        j["offer_id"] != int(offer["id"]) for j in _read_as(client, "/providers/jobs"))
