"""Our StandardMerkleTree matches OpenZeppelin's merkle-tree package; its proofs pay on chain.

The reference is the npm package itself, run through `contracts/merkle.mjs` and
`contracts/verify-proof.mjs`; those tests skip when node or `contracts/node_modules` is missing.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from test_contracts_world import BACKENDS, PAYOUT_TYPES, TOKEN, World, open_world, reverts

from ledgerlm.chain.merkle import StandardMerkleTree, leaf_hash, verify_proof

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
PAIR_TYPES = ["bytes32", "address"]
# A sample of sizes that covers one leaf, odd and even levels and the brief's upper end; the slow
# sweep below runs every size from 1 to 50.
QUICK_SIZES = [1, 2, 3, 6, 17, 50]

needs_reference = pytest.mark.skipif(
    shutil.which("node") is None
    or not (CONTRACTS / "node_modules" / "@openzeppelin" / "merkle-tree").is_dir(),
    reason="node or contracts/node_modules is missing (run `npm ci` in contracts/)",
)


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def random_values(types: list[str], count: int, seed: int) -> list[list]:
    rng = random.Random(seed)

    def one(kind: str):
        if kind == "address":
            return Account.from_key(rng.randbytes(32)).address
        if kind == "uint256":
            return rng.choice([0, 1, 2**256 - 1, rng.randrange(10**30), rng.randrange(2**256)])
        return "0x" + rng.randbytes(32).hex()

    return [[one(kind) for kind in types] for _ in range(count)]


def as_json(types: list[str], value: list) -> list:
    return [str(v) if kind == "uint256" else v for kind, v in zip(types, value)]


def reference(script: str, request: dict) -> dict:
    done = subprocess.run(["node", script], input=json.dumps(request), capture_output=True,
                          text=True, cwd=CONTRACTS, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def reference_tree(types: list[str], values: list[list]) -> dict:
    return reference("merkle.mjs", {"types": types,
                                    "values": [as_json(types, v) for v in values]})


@needs_reference
@pytest.mark.parametrize("types", [PAYOUT_TYPES, PAIR_TYPES], ids=["payout", "bytes32-address"])
@pytest.mark.parametrize("size", QUICK_SIZES)
def test_root_leaves_and_proofs_match_openzeppelin(types, size):
    assert_matches_reference(types, random_values(types, size, seed=size))


@pytest.mark.slow
@needs_reference
@pytest.mark.parametrize("types", [PAYOUT_TYPES, PAIR_TYPES], ids=["payout", "bytes32-address"])
@pytest.mark.parametrize("size", range(1, 51))
def test_every_tree_size_up_to_50_matches_openzeppelin(types, size):
    assert_matches_reference(types, random_values(types, size, seed=1000 + size))


def assert_matches_reference(types: list[str], values: list[list]) -> None:
    ours = StandardMerkleTree.of(values, types)
    theirs = reference_tree(types, values)

    assert ours.root == theirs["root"]
    assert ["0x" + leaf_hash(types, v).hex() for v in values] == theirs["leaves"]
    assert [ours.proof(i) for i in range(len(values))] == theirs["proofs"]


@needs_reference
def test_duplicate_leaves_get_the_same_proofs_as_openzeppelin():
    values = random_values(PAYOUT_TYPES, 4, seed=7)
    values.insert(2, list(values[0]))
    assert_matches_reference(PAYOUT_TYPES, values)


@needs_reference
def test_openzeppelin_accepts_our_proof_and_rejects_a_tampered_one():
    values = random_values(PAYOUT_TYPES, 9, seed=11)
    tree = StandardMerkleTree.of(values, PAYOUT_TYPES)
    proof = tree.proof(4)
    tampered = [proof[0][:-1] + ("0" if proof[0][-1] != "0" else "1"), *proof[1:]]

    def reference_verifies(candidate: list[str]) -> bool:
        return reference("verify-proof.mjs", {"root": tree.root, "types": PAYOUT_TYPES,
                                              "value": as_json(PAYOUT_TYPES, values[4]),
                                              "proof": candidate})["valid"]

    assert reference_verifies(proof)
    assert not reference_verifies(tampered)


def test_our_verifier_accepts_every_proof_and_only_for_its_own_leaf():
    values = random_values(PAIR_TYPES, 13, seed=3)
    tree = StandardMerkleTree.of(values, PAIR_TYPES)

    assert all(verify_proof(tree.root, PAIR_TYPES, v, tree.proof(i)) for i, v in enumerate(values))
    assert not verify_proof(tree.root, PAIR_TYPES, values[1], tree.proof(0))
    assert tree.proof(0) != tree.proof(1)


def test_an_empty_tree_is_refused():
    with pytest.raises(ValueError):
        StandardMerkleTree.of([], PAYOUT_TYPES)


@pytest.mark.parametrize("size", [1, 2, 7])
def test_every_payout_in_a_python_built_tree_claims_on_chain(world, size):
    token, distributor = world.contracts.token, world.contracts.distributor
    payouts = [(world.actor().address, (i + 1) * TOKEN + i) for i in range(size)]
    epoch, tree = world.fund_payouts(payouts)

    for i, (account, amount) in enumerate(payouts):
        distributor.claim(world.node, epoch, account, amount, tree.proof(i))
    with reverts("AlreadyClaimed"):
        distributor.claim(world.node, epoch, *payouts[-1], tree.proof(size - 1))

    assert [token.balance_of(a) for a, _ in payouts] == [v for _, v in payouts]
    assert distributor.epoch(epoch).unclaimed == 0


@needs_reference
def test_proofs_built_by_openzeppelin_merkle_tree_claim_on_chain(world):
    token, distributor = world.contracts.token, world.contracts.distributor
    payouts = [[world.actor().address, 3 * TOKEN], [world.actor().address, 2 * TOKEN], [world.actor().address, 1]]
    theirs = reference_tree(PAYOUT_TYPES, payouts)
    epoch = world.fresh_epoch()
    total = sum(v for _, v in payouts)
    distributor.fund(world.treasury, epoch, total)
    distributor.post_root(world.node, epoch, theirs["root"], total)

    for (account, amount), proof in zip(payouts, theirs["proofs"]):
        distributor.claim(world.node, epoch, account, amount, proof)

    assert [token.balance_of(a) for a, _ in payouts] == [v for _, v in payouts]
    assert distributor.epoch(epoch).unclaimed == 0
