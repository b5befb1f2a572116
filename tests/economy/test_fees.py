"""Fee pricing and the split of one fee: exact integers, evidence-backed contributors, remainders to the pool."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerlm.economy import EconomyError, FeeShares, price_fee, split_fee

DEFAULT = FeeShares(500, 4000, 4500, 1000)


def by_role(payouts):
    out = {}
    for p in payouts:
        out.setdefault(p.role, 0)
        out[p.role] += p.amount
    return out


def test_default_policy_split_of_a_round_fee():
    payouts = split_fee(10_000, DEFAULT, node="0xN", developer="0xD", datanet="reef",
                        contributor_bps={"0xA": 7500, "0xB": 2500}, evidence_bps=4000)
    roles = by_role(payouts)
    assert roles == {"node": 500, "developer": 4000, "contributor": 1800, "validators": 1000, "data_pool": 2700}
    assert {p.account: p.amount for p in payouts if p.role == "contributor"} == {"0xA": 1350, "0xB": 450}


def test_no_evidence_sends_the_whole_contributor_share_to_the_data_pool():
    roles = by_role(split_fee(10**18, DEFAULT, node="0xN", developer="0xD", datanet="reef"))
    assert "contributor" not in roles
    assert roles["data_pool"] == 45 * 10**16


def test_base_model_fee_goes_to_node_and_developer_only():
    roles = by_role(split_fee(999, DEFAULT, node="0xN", developer="0xD", datanet=None))
    assert set(roles) == {"node", "developer"} and sum(roles.values()) == 999


@settings(max_examples=300)
@given(st.integers(0, 10**30), st.lists(st.integers(0, 10_000), min_size=3, max_size=3),
       st.dictionaries(st.sampled_from(["0xa", "0xb", "0xc", "0xd"]), st.integers(0, 10_000)),
       st.integers(0, 10_000))
def test_every_split_conserves_the_fee(fee, cuts, weights, evidence):
    a, b, c = sorted(cuts)
    shares = FeeShares(a, b - a, c - b, 10_000 - c)
    payouts = split_fee(fee, shares, node="0xN", developer="0xD", datanet="d",
                        contributor_bps=weights, evidence_bps=evidence)
    assert sum(p.amount for p in payouts) == fee
    assert all(p.amount > 0 for p in payouts)
    contributors = sum(p.amount for p in payouts if p.role == "contributor")
    assert contributors <= fee * shares.contributors_bps // 10_000 * evidence // 10_000


def test_price_rounds_up_and_rejects_bad_input():
    assert price_fee(10, 1, 1000) == 11
    assert price_fee(1, 0, 1) == 1
    assert price_fee(0, 0, 10**18) == 0
    with pytest.raises(EconomyError) as err:
        price_fee(-1, 0, 1)
    assert err.value.field == "prompt_tokens"


def test_policy_must_sum_to_10000():
    with pytest.raises(EconomyError) as err:
        FeeShares(500, 4000, 4500, 999)
    assert err.value.field == "fee_policy"


def test_one_epoch_is_open_and_survives_a_restart(tmp_path):
    from ledgerlm.economy import open_epoch
    from ledgerlm.store.db import Database

    db = Database.at(tmp_path / "ledger.db")
    db.upgrade()
    with db.begin() as conn:
        assert open_epoch(conn) == 1
    with db.begin() as conn:
        assert open_epoch(conn) == 1
    db.close()
    again = Database.at(tmp_path / "ledger.db")
    with again.begin() as conn:
        assert open_epoch(conn) == 1
