"""Checks that the committed contract artifacts match contracts/src and run on the embedded EVM."""

import hashlib
import json
from pathlib import Path

import pytest
from web3 import EthereumTesterProvider, Web3

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
ARTIFACTS = ROOT / "src" / "ledgerlm" / "chain" / "artifacts"
EXPECTED = {"LedgerToken", "Registry", "Staking", "EpochDistributor", "PaymentEscrow", "RevenueShare",
            "RevenueShareFactory"}
EIP170_RUNTIME_LIMIT = 24576


def openzeppelin_version() -> str:
    # Without `npm ci` the pinned version in package.json is what compile.mjs would have installed.
    installed = CONTRACTS / "node_modules" / "@openzeppelin" / "contracts" / "package.json"
    if installed.exists():
        return json.loads(installed.read_text())["version"]
    return json.loads((CONTRACTS / "package.json").read_text())["dependencies"][
        "@openzeppelin/contracts"
    ]


def expected_source_hash() -> str:
    """The algorithm documented in contracts/compile.mjs and contracts/README.md."""
    digest = hashlib.sha256()
    for path in sorted((CONTRACTS / "src").glob("*.sol"), key=lambda p: p.name.encode()):
        digest.update(path.name.encode() + b"\n" + path.read_bytes() + b"\n")
    digest.update(f"@openzeppelin/contracts@{openzeppelin_version()}".encode())
    return digest.hexdigest()


def load_artifacts() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(ARTIFACTS.glob("*.json"))}


def test_every_contract_has_an_artifact():
    assert set(load_artifacts()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_artifact_is_compiled_from_current_sources(name):
    artifact = load_artifacts()[name]
    assert artifact["sourceHash"] == expected_source_hash(), (
        f"{name}.json is stale: contracts/src changed since the last compile; "
        "run `cd contracts && npm ci && npm run compile`"
    )
    assert artifact["contractName"] == name
    assert artifact["compiler"]["version"].startswith("0.8.")
    assert artifact["compiler"]["settings"]["evmVersion"] == "cancun"
    runtime_bytes = (len(artifact["deployedBytecode"]) - 2) // 2
    assert 0 < runtime_bytes <= EIP170_RUNTIME_LIMIT


def test_every_artifact_deploys_and_answers_on_the_embedded_evm():
    artifacts = load_artifacts()
    w3 = Web3(EthereumTesterProvider())
    admin, treasury = w3.eth.accounts[0], w3.eth.accounts[1]

    def deploy(name, *args):
        factory = w3.eth.contract(abi=artifacts[name]["abi"], bytecode=artifacts[name]["bytecode"])
        receipt = w3.eth.wait_for_transaction_receipt(
            factory.constructor(*args).transact({"from": admin, "gas": 8_000_000})
        )
        assert receipt.status == 1, f"{name} constructor reverted"
        return w3.eth.contract(address=receipt.contractAddress, abi=artifacts[name]["abi"])

    token = deploy("LedgerToken", treasury, 10**27)
    registry = deploy("Registry", admin)
    distributor = deploy("EpochDistributor", token.address, admin, treasury, 3600)
    staking = deploy("Staking", token.address, distributor.address, admin, 3600, 1000, 86_400, 10**22)
    escrow = deploy("PaymentEscrow", token.address, distributor.address, admin, 600, 86_400)

    assert token.functions.symbol().call() == "LGR"
    assert token.functions.decimals().call() == 18
    assert token.functions.totalSupply().call() == token.functions.balanceOf(treasury).call() == 10**27
    assert registry.functions.TOTAL_BPS().call() == 10_000
    assert staking.functions.slashCapBps().call() == 1000
    assert staking.functions.slashDisputeSeconds().call() == 86_400
    assert staking.functions.rewardReleaseLimit().call() == 10**22
    assert staking.functions.distributor().call() == distributor.address
    assert distributor.functions.token().call() == token.address
    assert distributor.functions.treasury().call() == treasury
    domain = escrow.functions.eip712Domain().call()
    assert (domain[1], domain[2], domain[4]) == ("ledgerlm-escrow", "1", escrow.address)
    assert escrow.functions.capPeriodSeconds().call() == 86_400
