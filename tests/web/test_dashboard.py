"""The dashboard in a real browser: a wallet creates a Datanet, uploads and gets it validated, a model's
lineage opens, a chat shows its attribution and receipt, an epoch closes and the wallet claims."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils import keccak

from ledgerlm import __version__
from ledgerlm.datanets import DatanetSpec
from ledgerlm.identity import SigningDomain, sign_action, typed_data

from ..datanets.conftest import QA_SCHEMA, write_jsonl

pytestmark = pytest.mark.browser

FAILED_LOAD = "Failed to load resource"  # chromium logs every 4xx answer; expected where a test provokes one
# wait_for_function predicates are written as functions: a bare expression is run through eval in the page,
# which the pages' content security policy refuses as it would any script's eval


def digest(typed: dict) -> bytes:
    return _hash_eip191_message(encode_typed_data(full_message=typed))


def last_signed(world, action: str) -> dict:
    found = [json.loads(t) for t in world.signed if json.loads(t)["primaryType"] == action]
    assert found, f"the wallet was never asked to sign {action}"
    return found[-1]


def test_every_page_renders_without_console_errors(tab, web_world):
    paths = ["/", "/web/datanets", "/web/datanets/new", f"/web/datanets/{web_world.datanet}", "/web/contributions/1",
             "/web/validation", f"/web/validation?address={web_world.wallet.address}", "/web/models",
             f"/web/models/{web_world.model_id}", "/web/jobs/1", "/web/playground", "/web/economy",
             f"/web/economy/earnings/{web_world.wallet.address}", "/web/ledger", "/web/ledger/blocks/1",
             f"/web/ledger/address/{web_world.wallet.address}"]
    unlabelled = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(c => !c.labels.length && !c.getAttribute('aria-label')).map(c => c.name || c.id)"""
    for path in paths:
        response = tab.page.goto(web_world.url + path)
        assert response.status == 200, (path, response.status)
        assert tab.page.locator("h1").first.is_visible()
        assert tab.page.evaluate(unlabelled) == [], path  # every control has a label
    tab.shot("ledger")
    # Keyboard first: the first Tab lands on the skip link, which moves focus to the content.
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("document.activeElement.textContent") == "Skip to content"
    # Small screens: pages reflow instead of scrolling sideways (wide tables scroll inside their box).
    tab.page.set_viewport_size({"width": 390, "height": 800})
    for path in ("/", f"/web/datanets/{web_world.datanet}", f"/web/models/{web_world.model_id}", "/web/ledger"):
        tab.page.goto(web_world.url + path)
        assert tab.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
    tab.shot("ledger-phone")
    # The first page stays small: HTML, CSS and scripts together.
    sizes = [len(httpx.get(web_world.url + p).content) for p in
             ["/", "/web/static/ledgerlm.css", "/web/static/htmx.min.js", "/web/static/keccak.js",
              "/web/static/ledgerlm.js"]]
    assert sum(sizes) < 200_000, sizes


def test_an_error_reads_as_a_sentence_not_json(tab, web_world):
    page = tab.open("/web/datanets/no-such-datanet")
    assert "no Datanet named 'no-such-datanet'" in page.locator(".error-message").inner_text()
    assert "{" not in page.locator("main").inner_text()
    tab.errors[:] = [e for e in tab.errors if FAILED_LOAD not in e]


def test_create_a_datanet_with_the_wallet_signing_what_the_cli_signs(tab, web_world):
    page = tab.open("/web/datanets/new")
    page.get_by_label("Name").first.fill("web-qa")
    page.get_by_label("Description").fill("made in the browser")
    page.get_by_label("Tags").fill("web, qa")
    page.get_by_label("JSON Schema of one record").fill("{not json")
    assert "not valid JSON" in page.locator("#schema-status").inner_text()
    page.get_by_label("JSON Schema of one record").fill(json.dumps(QA_SCHEMA))
    page.get_by_role("button", name="Sign and create").click()
    page.wait_for_url("**/web/datanets/web-qa")
    assert page.locator("h1").inner_text() == "web-qa"
    tab.shot("datanet-created")

    # Byte for byte: the digest the wallet signed is the one the CLI's signer produces for the same spec.
    typed = last_signed(web_world, "CreateDatanet")
    message = typed["message"]
    spec = DatanetSpec(name="web-qa", description="made in the browser", tags=["web", "qa"], schema=QA_SCHEMA)
    domain = SigningDomain.from_dict(httpx.get(web_world.url + "/node/info").json()["signing_domain"])
    cli = sign_action(web_world.wallet, "CreateDatanet", {"name": spec.name, "specHash": spec.spec_hash()},
                      domain=domain, nonce=int(message["nonce"]), deadline=int(message["deadline"]))
    assert digest(typed) == digest(typed_data("CreateDatanet", cli.message, domain))

    # Creating it again is refused, and the page says why in words.
    page = tab.open("/web/datanets/new")
    page.get_by_label("Name").first.fill("web-qa")
    page.get_by_role("button", name="Sign and create").click()
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert "web-qa" in notice.inner_text() and "{" not in notice.inner_text()
    tab.errors[:] = [e for e in tab.errors if FAILED_LOAD not in e]


def test_upload_a_file_see_it_gated_voted_on_published_and_verify_the_root(tab, web_world, api, tmp_path):
    api.create_datanet(DatanetSpec(name="uploads", schema=QA_SCHEMA), web_world.wallet)
    data = write_jsonl(tmp_path / "batch.jsonl", [
        {"question": "Which river crosses the old town?", "answer": "The Lune crosses the old town."},
        {"question": "Who keeps the records?", "answer": "Write to keeper@example.com for them."},
    ])
    page = tab.open("/web/datanets/uploads")
    page.locator("#upload-files").set_input_files(str(data))
    page.get_by_role("button", name="Sign and upload").click()
    page.wait_for_selector("#contributions tbody tr >> nth=1")
    assert last_signed(web_world, "Contribute")["message"]["datanet"] == "uploads"
    # another contributor's record, for the wallet to validate: nobody scores their own
    other = Account.from_key(b"\x0c" * 32)
    api.contribute("uploads", [write_jsonl(tmp_path / "other.jsonl", [
        {"question": "Which bridge is the oldest?", "answer": "The stone bridge is the oldest."}])], other)

    # The owner runs the gates, which reject the record with an e-mail address, and opens a round.
    page = tab.open("/web/datanets/uploads")
    page.get_by_role("button", name="Run gates and open a validator round").click()
    page.wait_for_function("() => document.querySelector('#contributions') &&"
                           " document.querySelector('#contributions').innerText.includes('round')")
    rows = page.locator("#contributions tbody tr")
    emailed = rows.filter(has_text="batch.jsonl line 2").inner_text()
    assert "personal_data/email" in emailed and "rejected" in emailed
    own = rows.filter(has_text="batch.jsonl line 1").inner_text()
    assert "pending" in own and "round" not in own  # the wallet's own record waits for a validator not its own
    theirs = rows.filter(has_text="other.jsonl").inner_text()
    assert "pending" in theirs
    round_id = int(re.search(r"round (\d+)", theirs).group(1))

    # The wallet is the only other staked validator: it commits a score, then reveals it, then tallies.
    validation = web_world.app.state.node.validation
    view = validation.round(round_id)
    try:
        page = tab.open(f"/web/validation?address={web_world.wallet.address}")
        votes = page.locator(f"form.votes[data-round='{round_id}']")
        votes.get_by_label(re.compile("Score for contribution")).fill("90")
        votes.get_by_role("button", name="Sign and commit votes").click()
        page.wait_for_function(f"() => document.querySelector(\"form.votes[data-round='{round_id}'] output\").innerText"
                               ".startsWith('Committed')")
        validation.clock = lambda: view.commit_deadline + 1
        page.reload()
        votes.get_by_role("button", name="Sign and reveal votes").click()
        page.wait_for_function(f"() => document.querySelector(\"form.votes[data-round='{round_id}'] output\").innerText"
                               ".startsWith('Revealed')")
        validation.clock = lambda: view.reveal_deadline + 1
        page = tab.open(f"/web/validation/rounds/{round_id}")
        page.get_by_role("button", name="Sign and tally this round").click()
        page.wait_for_function("() => [...document.querySelectorAll('main table')].pop().innerText.includes('accept')")
        tab.shot("round-tallied")
    finally:
        validation.clock = time.time

    page = tab.open("/web/datanets/uploads")
    theirs = page.locator("#contributions tbody tr").filter(has_text="other.jsonl").inner_text()
    assert "accepted" in theirs and "consensus 90" in theirs
    page.get_by_role("button", name="Publish a version").click()
    verify = page.get_by_role("button", name="Verify this root")
    verify.wait_for()
    verify.click()
    page.wait_for_function("() => document.querySelector('output[id^=verify-]').innerText.includes('match')")
    assert "matches" in page.locator("output[id^=verify-]").inner_text()
    assert page.locator("text=same").count() >= 1  # the Registry holds the same root
    tab.shot("datanet-uploaded-and-published")


def test_private_datanets_appear_after_the_wallet_signs_a_read(tab, web_world, api):
    api.create_datanet(DatanetSpec(name="hidden-notes", schema=QA_SCHEMA, visibility="private"), web_world.wallet)
    page = tab.open("/web/datanets")
    assert page.locator("#datanet-rows").get_by_role("link", name="hidden-notes").count() == 0
    page.get_by_role("button", name="Show my private Datanets").click()
    page.get_by_role("button", name="Stop").wait_for()
    page.locator("#datanet-rows").get_by_role("link", name="hidden-notes").click()
    page.wait_for_url("**/web/datanets/hidden-notes")
    assert "private" in page.locator(".facts").inner_text()
    signed = last_signed(web_world, "ReadRequest")["message"]
    assert signed["datanet"] == "*" and signed["node"] == api.info()["node_address"]  # good at this node alone
    tab.open("/web/datanets").get_by_role("button", name="Stop").click()
    page.get_by_role("button", name="Show my private Datanets").wait_for()


def test_a_models_lineage_runs_from_adapter_to_contributions(tab, web_world):
    page = tab.open("/web/models")
    page.get_by_role("link", name=web_world.model_id).first.click()
    page.wait_for_url(f"**/web/models/{web_world.model_id}")
    lineage = page.locator(".lineage").inner_text()
    assert "colours v1" in lineage and "matches" in lineage
    assert page.locator(".leaves li").count() == 8
    assert "Files match their lineage" in page.locator("main").inner_text()
    before_after = page.locator("table.before-after").first.inner_text()
    assert "loss" in before_after and "Before" in before_after and "After" in before_after
    assert page.locator("footer").inner_text().startswith(f"ledgerlm {__version__}")
    tab.shot("model-lineage")


@pytest.mark.slow  # a training run on top of the fixture's; the default suite keeps to the flows
def test_start_training_and_follow_the_loss_curve(tab, web_world):
    page = tab.open("/web/models")
    page.get_by_label("New model id").fill("facts-web-2")
    page.get_by_label("Training settings").fill(json.dumps({"epochs": 1, "max_steps": 3, "batch_size": 4, "max_len": 64,
                                                            "eval_split": 0.0, "rank": 4, "lr": 0.01}))
    page.get_by_role("button", name="Sign and start training").click()
    page.wait_for_url("**/web/jobs/*")
    page.wait_for_function("() => document.getElementById('job-state').innerText === 'done'", timeout=180_000)
    page.wait_for_function("() => document.querySelectorAll('figure[data-loss-chart] circle').length >= 2")
    assert last_signed(web_world, "TrainModel")["message"]["modelId"] == "facts-web-2"
    tab.shot("training-job")


def test_chat_shows_the_receipt_and_its_attribution(tab, web_world):
    page = tab.open(f"/web/playground?model={web_world.model_id}")
    page.get_by_label("Spending cap (LGR)").fill("1")
    page.get_by_role("button", name="Sign and create a key").click()
    page.wait_for_function("() => document.getElementById('key-status').innerText.startsWith('Key ready')")
    assert {"CreateApiKey", "SpendingCap"} <= {json.loads(t)["primaryType"] for t in web_world.signed}
    page.get_by_label("Your message").fill("What colour is the reef?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector(".attribution[data-final=yes]", timeout=120_000)
    box = page.locator(".attribution")
    text = box.inner_text()
    assert "final" in text and "valid" in text and "recomputed and sums to the fee" in text
    assert "Attributed to" in text
    tab.shot("playground-attribution")


def test_close_an_epoch_and_claim(tab, web_world, api):
    # A paid answer in the open epoch, made outside the browser as any API client would.
    key, _ = api.serving.create_key(web_world.wallet, 10**18)
    answer = httpx.post(web_world.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"model": web_world.model_id, "max_tokens": 8,
                              "messages": [{"role": "user", "content": "What colour is the gull?"}]},
                        timeout=120).json()
    receipt_id = answer["x_ledgerlm_receipt"]["id"]
    deadline = time.monotonic() + 120
    while api.serving.receipt(receipt_id)["receipt"]["state"] != "final":
        assert time.monotonic() < deadline, "attribution did not finish"
        time.sleep(0.2)
    page = tab.open("/web/economy")
    page.get_by_label("Operator credential").fill(web_world.home.operator_token_path.read_text().strip())
    page.get_by_role("button", name="Close epoch").click()
    page.wait_for_function("() => document.querySelector('#epochs tbody tr') &&"
                           " /posted|published/.test(document.querySelector('#epochs tbody').innerText)")
    tab.shot("epoch-closed")
    page = tab.open(f"/web/economy/earnings/{web_world.wallet.address}")
    assert page.locator("figure.chart svg rect").count() >= 1
    claim = page.get_by_role("button", name=re.compile("^Claim"))
    claim.first.click()
    page.wait_for_function("() => document.querySelector('#earnings').innerText.includes('claimed')")
    assert page.locator("#unclaimed").inner_text().startswith("0")
    assert last_signed(web_world, "ClaimPayout")["message"]["account"] == web_world.wallet.address
    tab.shot("earnings-claimed")
    # The ledger shows the claim as a decoded event.
    page = tab.open(f"/web/ledger/address/{web_world.wallet.address}")
    assert "Claimed" in page.locator("main").inner_text()


def test_keccak_merkle_root_and_vote_commit_in_the_browser_match_python(tab, web_world):
    from ledgerlm.chain import StandardMerkleTree
    from ledgerlm.validation.consensus import commit_hash

    page = tab.open("/web/datanets")
    samples = [b"", b"abc", bytes(range(256)) * 3]
    for sample in samples:
        got = page.evaluate("h => ledgerlmHash.toHex(ledgerlmHash.keccak256(ledgerlmHash.fromHex(h)))",
                            "0x" + sample.hex())
        assert got == "0x" + keccak(sample).hex()
    rows = [["0x" + keccak(bytes([i])).hex(), "0x" + f"{i:040x}"] for i in range(1, 8)]
    got = page.evaluate("rows => ledgerlmHash.standardMerkleRoot(['bytes32', 'address'], rows)", rows)
    assert got == StandardMerkleTree.of(rows, ["bytes32", "address"]).root
    salt = keccak(b"salt")
    got = page.evaluate("a => ledgerlmHash.voteCommit(a[0], a[1], a[2], a[3])",
                        [9, web_world.wallet.address, {"31": 0, "4": 100, "12": 55}, "0x" + salt.hex()])
    assert got == commit_hash(9, web_world.wallet.address, {31: 0, 4: 100, 12: 55}, salt)
