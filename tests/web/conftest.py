"""A node with a Datanet, a tiny fine-tuned model and a funded wallet, served over HTTP, and Debian's
chromium driven by Playwright with an injected EIP-1193 wallet that signs with a real key."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.config import Home
from ledgerlm.node import Node

from ..datanets.conftest import publish_qa
from ..serving.conftest import FACTS, served

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
# Chromium flags for a quiet, reproducible run as root in a container, with nothing fetched from the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PRICE = 10**15
DEPOSIT = 10 * 10**18

# The wallet the page talks to: window.ethereum whose eth_signTypedData_v4 is answered by Python with a
# real key (exposed as window.__ledgerlmWalletSign), as a browser wallet extension would answer it.
WALLET_SCRIPT = """
window.ethereum = {
  isLedgerlmTestWallet: true,
  request: async function (args) {
    const account = await window.__ledgerlmWalletAccount();
    switch (args.method) {
      case "eth_requestAccounts": case "eth_accounts": return [account];
      case "eth_chainId": return "0x539";
      case "eth_signTypedData_v4": return await window.__ledgerlmWalletSign(args.params[0], args.params[1]);
      default: throw Object.assign(new Error("unsupported method " + args.method), {code: 4200});
    }
  }
};
"""


@dataclass
class WebWorld:
    home: Home
    url: str
    wallet: object  # owner, contributor, developer and consumer: the one account the browser signs with
    model_id: str
    datanet: str
    app: object  # the served app: tests move its node's validation clock instead of waiting
    signed: list[str] = field(default_factory=list)  # every typed-data text the wallet was asked to sign


@pytest.fixture(scope="session")
def web_world(tmp_path_factory) -> WebWorld:
    pytest.importorskip("torch")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright", reason="browser tests need the playwright package (dev extras)")
    from ledgerlm.factory import tiny_random_model

    root = tmp_path_factory.mktemp("web")
    home = Home(root / "home")
    Node.init(home).close()
    config = home.load_config()
    config.torch_threads = 1
    home.save_config(config)
    wallet = Account.from_key(b"\x0b" * 32)
    tiny = tiny_random_model(root / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    app = create_app(lambda: Node.open(home))
    with served(home, app) as url:
        # Set up over HTTP on the served node itself, as any client would.
        client = NodeClient.connect(url, operator_token=home.operator_token_path.read_text().strip())
        client.factory.register_base("tiny", str(tiny))
        publish_qa(client, root, wallet, [(wallet, FACTS)], description="colours of things", tags=["facts"])
        node = app.state.node
        job = client.factory.train(wallet, {
            "model_id": "facts-web", "datanet": "colours", "version": 1, "base": "tiny",
            "config": {"epochs": 2, "lr": 1e-2, "batch_size": 4, "max_len": 64, "eval_split": 0.0, "rank": 4,
                       "seed": 3, "max_steps": 4},
        })
        done = node.factory.wait(job["id"], timeout=300)
        assert done.state == "done", done.error
        client.factory.publish(wallet, "facts-web", price_per_1k=PRICE)
        client.chain.faucet(wallet.address, eth_wei=10**18, tokens=100 * 10**18)
        node.contracts.escrow.deposit(wallet, DEPOSIT)
        client.chain.stake(wallet, "validator", 10 * 10**18)
        client.close()
        yield WebWorld(home, url, wallet, "facts-web", "colours", app)


@pytest.fixture(scope="session")
def browser_context(web_world, tmp_path_factory):
    """One chromium for the whole session, with a fresh profile and the injected wallet."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1200, "height": 900})
        context.set_default_timeout(30_000)

        def sign(address: str, typed_text: str) -> str:
            if address.lower() != web_world.wallet.address.lower():
                raise ValueError(f"this wallet holds {web_world.wallet.address}, not {address}")
            web_world.signed.append(typed_text)
            signable = encode_typed_data(full_message=json.loads(typed_text))
            return "0x" + web_world.wallet.sign_message(signable).signature.hex().removeprefix("0x")

        context.expose_function("__ledgerlmWalletSign", sign)
        context.expose_function("__ledgerlmWalletAccount", lambda: web_world.wallet.address)
        context.add_init_script(WALLET_SCRIPT)
        yield context
        context.close()


@dataclass
class BrowserPage:
    """A tab that records console errors and uncaught exceptions; the test fails on any it did not expect."""

    page: object
    errors: list[str]
    url: str

    def open(self, path: str):
        self.page.goto(self.url + path)
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def tab(browser_context, web_world):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    tab = BrowserPage(page, errors, web_world.url)
    yield tab
    page.close()
    assert not tab.errors, "errors in the browser console:\n" + "\n".join(tab.errors)


@pytest.fixture
def api(web_world):
    """An SDK client of the served node, for what a test sets up outside the browser."""
    client = NodeClient.connect(web_world.url)
    yield client
    client.close()
