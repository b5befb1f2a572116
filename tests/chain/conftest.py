"""Chain fixtures: funded local keys, the embedded chain, and an anvil node started per session.

`fixtures/Probe.json` is a small test-only contract compiled from `fixtures/Probe.sol`, and
`fixtures/SigningWallet.json` an ERC-1271 contract wallet from `fixtures/SigningWallet.sol`
(rebuild with `python tests/chain/fixtures/build_probe.py Probe SigningWallet`).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_account import Account

from ledgerlm.chain import Chain, ChainError, load_artifact, open_embedded, open_rpc
from ledgerlm.chain.anvil import anvil_node

FIXTURES = Path(__file__).parent / "fixtures"
ANVIL = Path(__file__).resolve().parents[2] / "contracts" / "node_modules" / ".bin" / "anvil"
ETHER = 10**18
# anvil's first dev account: the documented, public test key every anvil node prefunds.
ANVIL_FUNDER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
# The OP Stack devnet's chain id: the L2 tests run on an id other than anvil's default 31337.
L2_CHAIN_ID = 901


def account(seed: int):
    return Account.from_key(seed.to_bytes(32, "big"))


@pytest.fixture
def payer():
    return account(0x5EED01)


@pytest.fixture
def other():
    return account(0x5EED02)


@pytest.fixture
def treasury():
    return account(0x7EA5)


@pytest.fixture
def probe_artifact():
    return load_artifact("Probe", FIXTURES)


@pytest.fixture
def embedded_chain(tmp_path, payer, other):
    chain = open_embedded(tmp_path / "chain",
                          prefund={payer.address: 1000 * ETHER, other.address: 10 * ETHER})
    yield chain
    chain.close()


@pytest.fixture(scope="session")
def anvil_url():
    if not ANVIL.exists() or shutil.which("node") is None:
        pytest.skip("anvil is not installed (run `npm ci` in contracts/)")
    try:
        with anvil_node(ANVIL) as url:
            yield url
    except ChainError as exc:
        pytest.fail(str(exc))


@contextmanager
def l2_node():
    """A fresh anvil in OP Stack mode (deposit transactions, EIP-1559 fees) on chain id 901."""
    if not ANVIL.exists() or shutil.which("node") is None:
        pytest.skip("anvil is not installed (run `npm ci` in contracts/)")
    with anvil_node(ANVIL, chain_id=L2_CHAIN_ID, extra_args=("--network", "optimism")) as url:
        yield url


@pytest.fixture
def l2_url():
    """A fresh L2 per test: the L2 tests stop its miner, spike its base fee and re-org it."""
    with l2_node() as url:
        yield url


@pytest.fixture
def anvil_funder():
    return Account.from_key(ANVIL_FUNDER_KEY)


@pytest.fixture
def anvil_chain(anvil_url, payer, other):
    chain = open_rpc(anvil_url, expected_chain_id=31337)
    funder = Account.from_key(ANVIL_FUNDER_KEY)
    for recipient, wei in ((payer, 1000 * ETHER), (other, 10 * ETHER)):
        missing = wei - chain.eth_balance(recipient.address)
        if missing > 0:
            chain.send_eth(funder, recipient.address, missing)
    yield chain
    chain.close()


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def chain(request) -> Chain:
    """The same port on both backends: a test using this runs on the embedded EVM and on anvil."""
    return request.getfixturevalue(f"{request.param}_chain")
