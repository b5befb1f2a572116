"""LedgerToken via its typed client: a fixed supply nobody can grow; permits move allowances safely;
roles on the other contracts are granted only by the admin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_contracts_world import BACKENDS, TOKEN, World, open_world, reverts, unauthorised

from ledgerlm.chain import ChainError, role_id

ZERO = "0x" + "00" * 20


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def test_token_identity_matches_the_permit_domain(world):
    token = world.contracts.token

    assert (token.name(), token.symbol(), token.decimals()) == ("Ledger Token", "LGR", 18)
    assert token.eip712_domain["name"] == "Ledger Token"
    assert token.eip712_domain["version"] == "1"
    assert token.eip712_domain["chainId"] == world.chain.chain_id


def test_the_whole_fixed_supply_sits_in_the_treasury_and_no_key_can_mint(world):
    token = world.contracts.token
    supply = world.contracts.deployment.settings["supply"]
    mint_abi = [{"type": "function", "name": "mint", "stateMutability": "nonpayable", "outputs": [],
                 "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}]}]
    as_mintable = world.chain.w3.eth.contract(address=token.address, abi=mint_abi)

    assert token.total_supply() == supply
    assert not [f for f in token.contract.abi if f.get("name") in ("mint", "MINTER_ROLE", "grantRole")]
    for key in (world.node, world.admin, world.treasury):
        # mint(address,uint256) by selector: the token has no such function and no fallback.
        with pytest.raises(ChainError):
            world.chain.transact(as_mintable.functions.mint(key.address, TOKEN), key)
    assert token.total_supply() == supply


def test_a_revoked_role_can_no_longer_act_and_only_the_admin_grants(world):
    distributor = world.contracts.distributor
    poster, payee = world.actor(), world.actor()
    distributor.grant_role(world.admin, "POSTER_ROLE", poster.address)
    distributor.revoke_role(world.admin, "POSTER_ROLE", poster.address)
    epoch = world.fresh_epoch()
    distributor.fund(world.treasury, epoch, TOKEN)

    with unauthorised(poster.address, "POSTER_ROLE"):
        distributor.post_root(poster, epoch, b"\x01" * 32, TOKEN)
    with unauthorised(world.node.address, "DEFAULT_ADMIN_ROLE"):
        distributor.grant_role(world.node, "POSTER_ROLE", payee.address)

    assert not distributor.has_role("POSTER_ROLE", poster.address)


def test_a_role_holder_can_renounce_only_their_own_role(world):
    distributor = world.contracts.distributor
    poster, other = world.actor(), world.actor()
    distributor.grant_role(world.admin, "POSTER_ROLE", poster.address)

    with reverts("AccessControlBadConfirmation"):
        world.chain.transact(distributor.contract.functions.renounceRole(role_id("POSTER_ROLE"),
                                                                         other.address), poster)
    distributor.renounce_role(poster, "POSTER_ROLE")

    assert not distributor.has_role("POSTER_ROLE", poster.address)
    assert world.chain.call(distributor.contract.functions.getRoleAdmin(role_id("POSTER_ROLE"))) == \
        role_id("DEFAULT_ADMIN_ROLE")


def test_the_token_refuses_a_zero_treasury_or_supply(world):
    with reverts("ZeroAddress"):
        world.chain.deploy("LedgerToken", ZERO, TOKEN, sender=world.admin)
    with reverts("ZeroSupply"):
        world.chain.deploy("LedgerToken", world.treasury.address, 0, sender=world.admin)


def test_transfers_never_exceed_balance_or_allowance(world):
    token = world.contracts.token
    holder, spender = world.actor(5 * TOKEN), world.actor()

    with reverts("ERC20InsufficientBalance", sender=holder.address, balance=5 * TOKEN,
                 needed=6 * TOKEN):
        token.transfer(holder, spender.address, 6 * TOKEN)
    with reverts("ERC20InsufficientAllowance", spender=spender.address, allowance=0,
                 needed=TOKEN):
        token.transfer_from(spender, holder.address, spender.address, TOKEN)
    token.approve(holder, spender.address, 2 * TOKEN)
    token.transfer_from(spender, holder.address, spender.address, 2 * TOKEN)

    assert token.balance_of(holder.address) == 3 * TOKEN
    assert token.balance_of(spender.address) == 2 * TOKEN
    assert token.allowance(holder.address, spender.address) == 0


def test_a_permit_submitted_by_anyone_sets_the_allowance_once(world):
    token = world.contracts.token
    holder, spender, relayer = world.actor(4 * TOKEN), world.actor(), world.actor()
    permit = token.sign_permit(holder, spender.address, 3 * TOKEN, deadline=world.now() + 3600)

    token.permit(relayer, permit)
    with reverts("ERC2612InvalidSigner"):
        token.permit(relayer, permit)  # the nonce moved on, so the same signature recovers nobody
    token.transfer_from(spender, holder.address, spender.address, 3 * TOKEN)

    assert token.nonce_of(holder.address) == 1
    assert token.balance_of(spender.address) == 3 * TOKEN
    assert world.chain.nonce(holder.address) == 0  # the holder never sent a transaction


def test_a_permit_is_refused_when_expired_or_signed_by_someone_else(world):
    token = world.contracts.token
    holder, spender, forger = world.actor(TOKEN), world.actor(), world.actor()
    stale = token.sign_permit(holder, spender.address, TOKEN, deadline=world.now() - 1)
    forged = token.sign_permit(forger, spender.address, TOKEN, deadline=world.now() + 3600)
    forged_for_holder = type(forged)(holder.address, forged.spender, forged.value,
                                     forged.deadline, forged.v, forged.r, forged.s)

    with reverts("ERC2612ExpiredSignature", deadline=stale.deadline):
        token.permit(spender, stale)
    with reverts("ERC2612InvalidSigner", owner=holder.address):
        token.permit(spender, forged_for_holder)

    assert token.allowance(holder.address, spender.address) == 0
    assert token.nonce_of(holder.address) == 0


def test_role_ids_match_the_contract_constants(world):
    c = world.contracts
    for client, names in ((c.staking, ("SLASHER_ROLE", "REWARDS_ROLE", "DEFAULT_ADMIN_ROLE")),
                          (c.distributor, ("FUNDER_ROLE", "POSTER_ROLE", "SWEEPER_ROLE")),
                          (c.escrow, ("SETTLER_ROLE",))):
        for name in names:
            assert world.chain.call(client.contract.functions[name]()) == role_id(name)
