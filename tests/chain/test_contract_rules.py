"""Checks the settlement contracts' promises to users on the embedded EVM, through raw web3 calls."""

import ast
import json
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "src" / "ledgerlm" / "chain" / "artifacts"
CONTRACTS = ROOT / "contracts"
TOKEN = 10**18
VALIDATOR = 0


@dataclass
class Actor:
    address: str
    key: bytes


@dataclass
class Deployment:
    w3: Web3
    admin: str
    treasury: str
    node: Actor
    alice: Actor
    bob: Actor
    token: object
    registry: object
    staking: object
    distributor: object
    escrow: object

    def send(self, fn, sender):
        # A fixed gas limit skips eth-tester's slow gas estimation; reverts are checked with calls.
        tx_hash = fn.transact({"from": sender, "gas": 3_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt.status == 1
        return receipt

    def now(self) -> int:
        return self.w3.eth.get_block("latest").timestamp

    def advance(self, seconds: int) -> None:
        self.w3.provider.ethereum_tester.time_travel(self.now() + seconds)


def _contract(w3, name, admin, *args):
    artifact = json.loads((ARTIFACTS / f"{name}.json").read_text())
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": admin, "gas": 8_000_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])


def _actor(w3, funder, seed: int) -> Actor:
    key = seed.to_bytes(32, "big")
    account = Account.from_key(key)
    w3.provider.ethereum_tester.add_account("0x" + key.hex())
    w3.eth.send_transaction({"from": funder, "to": account.address, "value": 10**18})
    return Actor(account.address, key)


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    w3 = Web3(EthereumTesterProvider())
    admin, treasury = w3.eth.accounts[0], w3.eth.accounts[1]
    node, alice, bob = (_actor(w3, admin, seed) for seed in (0xA11CE0, 0xA11CE1, 0xA11CE2))
    token = _contract(w3, "LedgerToken", admin, admin)
    registry = _contract(w3, "Registry", admin, admin)
    staking = _contract(w3, "Staking", admin, token.address, admin, treasury, 3600)
    distributor = _contract(w3, "EpochDistributor", admin, token.address, admin)
    escrow = _contract(w3, "PaymentEscrow", admin, token.address, distributor.address, admin, 600)
    d = Deployment(
        w3, admin, treasury, node, alice, bob, token, registry, staking, distributor, escrow
    )
    d.send(
        distributor.functions.grantRole(distributor.functions.FUNDER_ROLE().call(), escrow.address),
        admin,
    )
    d.send(escrow.functions.grantRole(escrow.functions.SETTLER_ROLE().call(), node.address), admin)
    d.send(
        staking.functions.grantRole(staking.functions.SLASHER_ROLE().call(), node.address), admin
    )
    d.send(
        registry.functions.grantRole(registry.functions.REGISTRAR_ROLE().call(), node.address),
        admin,
    )
    for who in (alice, bob):
        d.send(token.functions.mint(who.address, 1000 * TOKEN), admin)
    return d


@pytest.fixture
def chain(deployment: Deployment):
    # Deploying once and rewinding after each test keeps the module fast and the tests independent.
    tester = deployment.w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    yield deployment
    tester.revert_to_snapshot(snapshot)


@contextmanager
def reverts(contract, error: str):
    """Expects a revert carrying `error`, a custom error declared in `contract`'s ABI."""
    entry = next(e for e in contract.abi if e["type"] == "error" and e["name"] == error)
    selector = keccak(text=f"{error}({','.join(i['type'] for i in entry['inputs'])})")[:4]
    with pytest.raises(Exception) as caught:
        yield
    data = getattr(caught.value, "data", None)
    if not isinstance(data, str):
        # eth-tester reports the revert payload as a bytes literal after this prefix.
        message = str(caught.value)
        data = "0x" + ast.literal_eval(message.split("execution reverted: ", 1)[1]).hex()
    assert bytes.fromhex(data[2:10]) == selector, f"expected {error}, got {caught.value!r}"


def sign_spending_cap(
    d: Deployment, consumer: Actor, settler: str, epoch: int, cap: int, deadline: int
):
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "SpendingCap": [
                {"name": "consumer", "type": "address"},
                {"name": "settler", "type": "address"},
                {"name": "epoch", "type": "uint256"},
                {"name": "cap", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "SpendingCap",
        "domain": {
            "name": "ledgerlm-escrow",
            "version": "1",
            "chainId": d.w3.eth.chain_id,
            "verifyingContract": d.escrow.address,
        },
        "message": {
            "consumer": consumer.address,
            "settler": settler,
            "epoch": epoch,
            "cap": cap,
            "deadline": deadline,
        },
    }
    signed = Account.sign_message(encode_typed_data(full_message=typed), consumer.key)
    return signed.signature, signed.message_hash


def leaf(account: str, amount: int) -> bytes:
    return keccak(keccak(encode(["address", "uint256"], [account, amount])))


def pair_root(a: bytes, b: bytes) -> bytes:
    return keccak(min(a, b) + max(a, b))


def fund_escrow(d: Deployment, consumer: Actor, amount: int) -> None:
    d.send(d.token.functions.approve(d.escrow.address, amount), consumer.address)
    d.send(d.escrow.functions.deposit(amount), consumer.address)


# --- PaymentEscrow -------------------------------------------------------------------------


def test_consumer_signature_digest_matches_the_contract(chain):
    deadline = chain.now() + 3600
    _, digest = sign_spending_cap(chain, chain.alice, chain.node.address, 7, 5 * TOKEN, deadline)
    on_chain = chain.escrow.functions.spendingCapDigest(
        chain.alice.address, chain.node.address, 7, 5 * TOKEN, deadline
    ).call()
    assert on_chain == digest


def test_settlement_moves_signed_charges_to_claimable_payouts(chain):
    d, epoch = chain, 1
    fund_escrow(d, d.alice, 10 * TOKEN)
    deadline = d.now() + 3600
    signature, _ = sign_spending_cap(d, d.alice, d.node.address, epoch, 4 * TOKEN, deadline)
    # Alice's 3 LGR are split 2/1 between bob (a contributor) and the node operator.
    payouts = [(d.bob.address, 2 * TOKEN), (d.node.address, 1 * TOKEN)]
    leaves = [leaf(a, v) for a, v in payouts]
    root = pair_root(*leaves)
    debit = (d.alice.address, 3 * TOKEN, 4 * TOKEN, deadline, signature)
    d.send(d.escrow.functions.settleEpoch(epoch, root, [debit]), d.node.address)

    assert d.escrow.functions.balanceOf(d.alice.address).call() == 7 * TOKEN
    assert d.escrow.functions.spent(d.alice.address, epoch).call() == 3 * TOKEN
    assert d.distributor.functions.epochs(epoch).call() == [root, 3 * TOKEN, 0]

    bob_before = d.token.functions.balanceOf(d.bob.address).call()
    # Anyone may submit the claim; the tokens go to the leaf's account.
    d.send(
        d.distributor.functions.claim(epoch, d.bob.address, 2 * TOKEN, [leaves[1]]), d.alice.address
    )
    assert d.token.functions.balanceOf(d.bob.address).call() == bob_before + 2 * TOKEN
    with reverts(d.distributor, "AlreadyClaimed"):
        d.distributor.functions.claim(epoch, d.bob.address, 2 * TOKEN, [leaves[1]]).call(
            {"from": d.bob.address}
        )


def test_node_cannot_debit_beyond_the_signed_cap(chain):
    d, epoch = chain, 2
    fund_escrow(d, d.alice, 10 * TOKEN)
    deadline = d.now() + 3600
    signature, _ = sign_spending_cap(d, d.alice, d.node.address, epoch, 4 * TOKEN, deadline)
    # Two debits that each fit the cap but together exceed it.
    debits = [(d.alice.address, 3 * TOKEN, 4 * TOKEN, deadline, signature)] * 2
    with reverts(d.escrow, "CapExceeded"):
        d.escrow.functions.settleEpoch(epoch, b"\x01" * 32, debits).call({"from": d.node.address})
    # Claiming a larger cap than the consumer signed invalidates the signature.
    inflated = (d.alice.address, 5 * TOKEN, 5 * TOKEN, deadline, signature)
    with reverts(d.escrow, "InvalidSignature"):
        d.escrow.functions.settleEpoch(epoch, b"\x01" * 32, [inflated]).call(
            {"from": d.node.address}
        )
    assert d.escrow.functions.balanceOf(d.alice.address).call() == 10 * TOKEN


def test_authorisation_is_bound_to_its_settler_and_deadline(chain):
    d, epoch = chain, 3
    fund_escrow(d, d.alice, 10 * TOKEN)
    d.send(
        d.escrow.functions.grantRole(d.escrow.functions.SETTLER_ROLE().call(), d.bob.address),
        d.admin,
    )
    deadline = d.now() + 100
    signature, _ = sign_spending_cap(d, d.alice, d.node.address, epoch, TOKEN, deadline)
    debit = (d.alice.address, TOKEN, TOKEN, deadline, signature)
    with reverts(d.escrow, "InvalidSignature"):
        d.escrow.functions.settleEpoch(epoch, b"\x01" * 32, [debit]).call({"from": d.bob.address})
    d.advance(200)
    with reverts(d.escrow, "AuthorisationExpired"):
        d.escrow.functions.settleEpoch(epoch, b"\x01" * 32, [debit]).call({"from": d.node.address})


def test_withdrawal_waits_for_the_delay_and_stays_settleable(chain):
    d, epoch = chain, 4
    fund_escrow(d, d.alice, 10 * TOKEN)
    d.send(d.escrow.functions.requestWithdrawal(10 * TOKEN), d.alice.address)
    with reverts(d.escrow, "WithdrawalNotReady"):
        d.escrow.functions.withdraw().call({"from": d.alice.address})
    deadline = d.now() + 3600
    signature, _ = sign_spending_cap(d, d.alice, d.node.address, epoch, 4 * TOKEN, deadline)
    debit = (d.alice.address, 4 * TOKEN, 4 * TOKEN, deadline, signature)
    d.send(d.escrow.functions.settleEpoch(epoch, b"\x01" * 32, [debit]), d.node.address)
    d.advance(601)
    before = d.token.functions.balanceOf(d.alice.address).call()
    d.send(d.escrow.functions.withdraw(), d.alice.address)
    assert d.token.functions.balanceOf(d.alice.address).call() == before + 6 * TOKEN
    assert d.escrow.functions.balanceOf(d.alice.address).call() == 0


def test_deposit_with_permit_needs_no_prior_approval(chain):
    d = chain
    deadline = d.now() + 3600
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {
            "name": "Ledger Token",
            "version": "1",
            "chainId": d.w3.eth.chain_id,
            "verifyingContract": d.token.address,
        },
        "message": {
            "owner": d.alice.address,
            "spender": d.escrow.address,
            "value": 5 * TOKEN,
            "nonce": 0,
            "deadline": deadline,
        },
    }
    sig = Account.sign_message(encode_typed_data(full_message=typed), d.alice.key)
    d.send(
        d.escrow.functions.depositWithPermit(
            5 * TOKEN, deadline, sig.v, sig.r.to_bytes(32, "big"), sig.s.to_bytes(32, "big")
        ),
        d.alice.address,
    )
    assert d.escrow.functions.balanceOf(d.alice.address).call() == 5 * TOKEN


# --- EpochDistributor ------------------------------------------------------------------------


def test_claims_never_exceed_the_funded_total(chain):
    d, epoch = chain, 9
    d.send(
        d.distributor.functions.grantRole(d.distributor.functions.FUNDER_ROLE().call(), d.admin),
        d.admin,
    )
    d.send(d.token.functions.mint(d.admin, 5 * TOKEN), d.admin)
    d.send(d.token.functions.approve(d.distributor.address, 5 * TOKEN), d.admin)
    # A faulty root promising 4 + 3 LGR against 5 funded: the second claim must fail.
    leaves = [leaf(d.alice.address, 4 * TOKEN), leaf(d.bob.address, 3 * TOKEN)]
    d.send(d.distributor.functions.fundEpoch(epoch, pair_root(*leaves), 5 * TOKEN), d.admin)
    with reverts(d.distributor, "EpochAlreadyFunded"):
        d.distributor.functions.fundEpoch(epoch, b"\x02" * 32, 0).call({"from": d.admin})
    with reverts(d.distributor, "InvalidProof"):
        d.distributor.functions.claim(epoch, d.alice.address, 5 * TOKEN, [leaves[1]]).call(
            {"from": d.alice.address}
        )
    d.send(
        d.distributor.functions.claim(epoch, d.alice.address, 4 * TOKEN, [leaves[1]]),
        d.alice.address,
    )
    with reverts(d.distributor, "EpochOverclaimed"):
        d.distributor.functions.claim(epoch, d.bob.address, 3 * TOKEN, [leaves[0]]).call(
            {"from": d.bob.address}
        )


@pytest.mark.skipif(
    shutil.which("node") is None or not (CONTRACTS / "node_modules").exists(),
    reason="needs node and `npm ci` in contracts/",
)
def test_reference_merkle_tree_proofs_are_accepted_on_chain(chain):
    d, epoch = chain, 11
    payouts = [(d.alice.address, 3 * TOKEN), (d.bob.address, 2 * TOKEN), (d.node.address, 1)]
    request = {"types": ["address", "uint256"], "values": [[a, str(v)] for a, v in payouts]}
    tree = json.loads(
        subprocess.run(
            ["node", "merkle.mjs"],
            cwd=CONTRACTS,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    total = sum(v for _, v in payouts)
    d.send(
        d.distributor.functions.grantRole(d.distributor.functions.FUNDER_ROLE().call(), d.admin),
        d.admin,
    )
    d.send(d.token.functions.mint(d.admin, total), d.admin)
    d.send(d.token.functions.approve(d.distributor.address, total), d.admin)
    d.send(d.distributor.functions.fundEpoch(epoch, tree["root"], total), d.admin)
    for (account, amount), proof in zip(payouts, tree["proofs"]):
        d.send(d.distributor.functions.claim(epoch, account, amount, proof), d.admin)
    assert d.distributor.functions.epochs(epoch).call()[2] == total


# --- Staking ---------------------------------------------------------------------------------


def test_unstake_waits_for_cooldown_and_slash_reaches_pending_stake(chain):
    d = chain
    d.send(d.token.functions.approve(d.staking.address, 100 * TOKEN), d.alice.address)
    d.send(d.staking.functions.stake(VALIDATOR, 100 * TOKEN), d.alice.address)
    d.send(d.staking.functions.requestUnstake(VALIDATOR, 60 * TOKEN), d.alice.address)
    assert d.staking.functions.stakeOf(d.alice.address, VALIDATOR).call() == 40 * TOKEN
    assert d.staking.functions.totalStaked(VALIDATOR).call() == 40 * TOKEN
    with reverts(d.staking, "CooldownNotElapsed"):
        d.staking.functions.withdraw(VALIDATOR).call({"from": d.alice.address})

    # 50 LGR slash: all 40 active, then 10 of the 60 cooling down.
    d.send(
        d.staking.functions.slash(d.alice.address, VALIDATOR, 50 * TOKEN, b"\x0b" * 32),
        d.node.address,
    )
    assert d.staking.functions.stakeOf(d.alice.address, VALIDATOR).call() == 0
    assert d.staking.functions.pendingOf(d.alice.address, VALIDATOR).call()[0] == 50 * TOKEN
    assert d.token.functions.balanceOf(d.treasury).call() == 50 * TOKEN
    with reverts(d.staking, "InsufficientStake"):
        d.staking.functions.slash(d.alice.address, VALIDATOR, 51 * TOKEN, b"\x0b" * 32).call(
            {"from": d.node.address}
        )

    d.advance(3601)
    before = d.token.functions.balanceOf(d.alice.address).call()
    d.send(d.staking.functions.withdraw(VALIDATOR), d.alice.address)
    assert d.token.functions.balanceOf(d.alice.address).call() == before + 50 * TOKEN


def test_only_the_slasher_role_moves_someone_elses_stake(chain):
    d = chain
    d.send(d.token.functions.approve(d.staking.address, 10 * TOKEN), d.alice.address)
    d.send(d.staking.functions.stake(VALIDATOR, 10 * TOKEN), d.alice.address)
    with reverts(d.staking, "AccessControlUnauthorizedAccount"):
        d.staking.functions.slash(d.alice.address, VALIDATOR, TOKEN, b"\x00" * 32).call(
            {"from": d.bob.address}
        )
    # Bob has no stake of his own; alice's position is untouched by anything he calls.
    with reverts(d.staking, "NothingToWithdraw"):
        d.staking.functions.withdraw(VALIDATOR).call({"from": d.bob.address})
    with reverts(d.staking, "UnknownRole"):
        d.staking.functions.stake(3, TOKEN).call({"from": d.alice.address})
    assert d.staking.functions.stakeOf(d.alice.address, VALIDATOR).call() == 10 * TOKEN


# --- Registry --------------------------------------------------------------------------------


def test_registry_keeps_versions_sequential_and_lineage_known(chain):
    d = chain
    datanet, model = keccak(text="datanet:medical-qa"), keccak(text="model:qa-lora")
    root1, root2 = keccak(text="root-1"), keccak(text="root-2")
    reg = d.registry.functions
    d.send(
        reg.registerDatanet(datanet, d.alice.address, "medical-qa", b"\x01" * 32, "CC-BY-4.0"),
        d.node.address,
    )
    with reverts(d.registry, "NonSequentialVersion"):
        reg.publishVersion(datanet, 2, root2, 10, b"\x00" * 32).call({"from": d.node.address})
    d.send(reg.publishVersion(datanet, 1, root1, 10, b"\x02" * 32), d.node.address)
    assert reg.latestVersion(datanet).call() == 1
    assert reg.getVersion(datanet, 1).call()[:3] == [root1, 10, b"\x02" * 32]

    lineage = (model, d.bob.address, "SmolLM2-135M-Instruct", b"\x03" * 32, b"\x04" * 32)
    hashes = (b"\x05" * 32, b"\x06" * 32)
    with reverts(d.registry, "UnknownVersionRoot"):
        reg.registerModel(*lineage, [root2], *hashes).call({"from": d.node.address})
    d.send(reg.registerModel(*lineage, [root1], *hashes), d.node.address)
    assert reg.getModel(model).call()[4] == [root1]

    with reverts(d.registry, "FeeSharesMustSumTo10000"):
        reg.setFeePolicy(model, 500, 4000, 4500, 999).call({"from": d.bob.address})
    with reverts(d.registry, "NotRegistrarOrDeveloper"):
        reg.setFeePolicy(model, 500, 4000, 4500, 1000).call({"from": d.alice.address})
    d.send(reg.setFeePolicy(model, 500, 4000, 4500, 1000), d.bob.address)
    assert reg.feePolicy(model).call() == [500, 4000, 4500, 1000]
