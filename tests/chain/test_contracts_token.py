"""LedgerToken via its typed client: only minters grow supply; permits move allowances safely."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_contracts_world import BACKENDS, TOKEN, World, open_world, reverts, unauthorised

from ledgerlm.chain import role_id

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


def test_minters_create_supply_and_nobody_else_can(world):
    token = world.contracts.token
    holder, stranger = world.actor(), world.actor()
    supply = token.total_supply()

    minted = token.mint(world.node, holder.address, 7 * TOKEN)
    token.mint(world.admin, holder.address, 3 * TOKEN)
    with unauthorised(stranger.address, "MINTER_ROLE"):
        token.mint(stranger, stranger.address, TOKEN)
    with reverts("ERC20InvalidReceiver", receiver=ZERO):
        token.mint(world.node, ZERO, TOKEN)

    assert token.balance_of(holder.address) == 10 * TOKEN
    assert token.total_supply() == supply + 10 * TOKEN
    assert minted.events(token.contract, "Transfer") == [
        {"from": ZERO, "to": holder.address, "value": 7 * TOKEN}]


def test_a_revoked_minter_can_no_longer_mint(world):
    token = world.contracts.token
    minter = world.actor()
    token.grant_role(world.admin, "MINTER_ROLE", minter.address)
    token.mint(minter, minter.address, TOKEN)
    token.revoke_role(world.admin, "MINTER_ROLE", minter.address)

    with unauthorised(minter.address, "MINTER_ROLE"):
        token.mint(minter, minter.address, TOKEN)
    with unauthorised(world.node.address, "DEFAULT_ADMIN_ROLE"):
        token.grant_role(world.node, "MINTER_ROLE", minter.address)

    assert token.balance_of(minter.address) == TOKEN
    assert not token.has_role("MINTER_ROLE", minter.address)


def test_a_role_holder_can_renounce_only_their_own_role(world):
    token = world.contracts.token
    minter, other = world.actor(), world.actor()
    token.grant_role(world.admin, "MINTER_ROLE", minter.address)

    with reverts("AccessControlBadConfirmation"):
        world.chain.transact(token.contract.functions.renounceRole(role_id("MINTER_ROLE"),
                                                                   other.address), minter)
    token.renounce_role(minter, "MINTER_ROLE")

    assert not token.has_role("MINTER_ROLE", minter.address)
    assert world.chain.call(token.contract.functions.getRoleAdmin(role_id("MINTER_ROLE"))) == \
        role_id("DEFAULT_ADMIN_ROLE")


def test_the_token_refuses_a_zero_admin(world):
    with reverts("ZeroAddress"):
        world.chain.deploy("LedgerToken", ZERO, sender=world.admin)


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
    token = world.contracts.token
    for name in ("MINTER_ROLE", "DEFAULT_ADMIN_ROLE"):
        assert world.chain.call(token.contract.functions[name]()) == role_id(name)
