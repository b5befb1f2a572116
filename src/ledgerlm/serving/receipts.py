"""Receipts: one per completion, written durably before the response completes and signed by the node.

A receipt is first written `attributing`: fee, fee split (the contributor share still in the data
pool), token counts, Datanet roots and the request text, signed. Attribution then runs on a worker
after the last token; attaching its result re-splits the contributor share by evidence, re-signs
and marks the receipt `final`. A node that dies in between finds the receipt still `attributing`
at the next start and resumes it, so no receipt is ever dropped. Anyone holding the receipt can
recompute its split from its stored inputs and check the node's EIP-712 signature (`verify`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, keccak, to_checksum_address
from pydantic import BaseModel
from sqlalchemy import and_, delete, insert, select, tuple_, update
from sqlalchemy.engine import Connection

from ledgerlm.economy import FeeShares, Payout, add_spent, fee_shares_in_force, open_epoch, price_fee, split_fee
from ledgerlm.errors import AuthError
from ledgerlm.identity import ANY_DATANET, ReadGrant, SigningDomain, recover_signer, typed_data
from ledgerlm.money import BPS
from ledgerlm.serving.catalog import ServedModel
from ledgerlm.serving.errors import ReceiptError
from ledgerlm.store import Database
from ledgerlm.store.schema import datanets, models, receipt_accounts, receipts

ZERO_ADDRESS = "0x" + "00" * 20
ZERO_HASH = "0x" + "00" * 32
MAX_LISTED = 1000  # receipts one listing returns at most; the next page starts `before` the last one listed
# What anyone may read of the attribution of a model trained on a private Datanet: the split it paid and the rule
# it was computed by, not the examples, contributions and scores that would name or fingerprint its records.
PUBLIC_ATTRIBUTION = ("contributor_bps", "evidence_bps", "pool_bps", "unattributed", "error", "rule")
# The reason a receipt gives when attribution broke on this node; what broke goes to the node's log.
ATTRIBUTION_FAILED = "attribution failed on this node; the contributor share goes to the Datanet's data pool"

log = logging.getLogger("ledgerlm.serving")


def json_hash(value) -> str:
    """keccak256 of canonical JSON (sorted keys): what a signed receipt commits to for each stored field."""
    if value is None:
        return ZERO_HASH
    return "0x" + keccak(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hex()


class Receipt(BaseModel):
    id: str
    epoch: int
    consumer: str | None
    model_id: str
    adapter_sha256: str | None
    prompt_tokens: int
    completion_tokens: int
    price_per_1k: str
    fee: str
    fee_policy: dict
    payouts: list[dict]
    datanet_roots: list[dict]
    attribution: dict | None
    state: str
    body: dict
    signature: str | None
    created_at: int
    finalized_at: int | None
    request: dict | None = None


@dataclass(frozen=True)
class Completed:
    """What a finished call hands the log: who called which model, the tokens spent, the text."""

    id: str
    consumer: str | None
    model: ServedModel
    prompt_tokens: int
    completion_tokens: int
    request: dict  # {"prompt" | "messages", "completion", "finish_reason"}


def contributor_split(result) -> tuple[dict[str, int], int, dict]:
    """From an attribution result: contributor bps, the bps of the contributor share evidence backs, and
    the JSON kept on the receipt."""
    shares = {c.contributor: c.bps for c in result.contributors}
    evidence = getattr(result, "evidence_bps", None)
    if evidence is None:  # results that do not state their evidence: all of it when attributed
        evidence = 0 if result.unattributed else BPS
    # the whole result, so `ledgerlm attribute --verify` can recompute it from the receipt
    return shares, int(evidence), {**orjson.loads(orjson.dumps(result.to_dict())), "contributor_bps": shares,
                                   "evidence_bps": int(evidence)}


class ReceiptLog:
    """Writes, finalises, reads and verifies receipts; the node's key signs them."""

    def __init__(self, db: Database, account: LocalAccount, *, domain: SigningDomain):
        self.db = db
        self.account = account
        self.domain = domain

    # ------------------------------------------------------------------ writing

    def write(self, call: Completed, *, attributing: bool,
              bind: Callable[[Connection, str], None] | None = None) -> Receipt:
        """Price the call, split its fee, sign, and commit; `attributing` leaves it to the worker to finish.

        `bind` runs in the same transaction (the idempotency claim takes the receipt, or refuses it)."""
        model = call.model
        fee = price_fee(call.prompt_tokens, call.completion_tokens, model.price_per_1k)
        parties = {"node": self.account.address, "developer": model.developer or self.account.address,
                   "datanet": model.datanet}
        request = {**call.request, "split": parties}
        now = int(time.time())
        row = {
            "id": call.id, "consumer": call.consumer, "model_id": model.id, "adapter_sha256": model.adapter_sha256,
            "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens,
            "price_per_1k": str(model.price_per_1k), "fee": str(fee), "datanet_roots": list(model.datanet_roots),
            "attribution": None, "state": "attributing" if attributing else "final", "created_at": now,
            "finalized_at": None if attributing else now, "request": request,
        }
        with self.db.begin() as conn:
            row["epoch"] = open_epoch(conn)
            # the split in force in the receipt's epoch: a change made during it starts with the next one
            shares = fee_shares_in_force(conn, model.id, row["epoch"], model.fee_shares)
            row["fee_policy"] = shares.to_dict()
            row["payouts"] = [p.to_dict() for p in split_fee(fee, shares, **parties)]
            row["body"], row["signature"] = self._sign(row)
            conn.execute(insert(receipts).values(**row))
            name_accounts(conn, call.id, now, call.consumer, row["payouts"])
            add_spent(conn, call.consumer, row["epoch"], fee)  # budgets read the running total, not every receipt
            if bind is not None:
                bind(conn, call.id)
        return Receipt(**row)

    def attach(self, receipt_id: str, result) -> Receipt:
        """Attach an attribution result (None: nothing could be attributed), re-split, re-sign, finalise."""
        current = self.get(receipt_id)
        if current.state != "attributing":
            return current
        if result is None:
            shares, evidence, attribution = {}, 0, {"contributor_bps": {}, "evidence_bps": 0, "unattributed": True}
        elif isinstance(result, dict):  # an attribution that failed: say why, pay the data pool
            shares, evidence, attribution = {}, 0, {"contributor_bps": {}, "evidence_bps": 0, "unattributed": True,
                                                     **result}
        else:
            shares, evidence, attribution = contributor_split(result)
        parties = current.request["split"]
        payouts = split_fee(int(current.fee), FeeShares.from_dict(current.fee_policy), **parties,
                            contributor_bps=shares, evidence_bps=evidence)
        row = {**current.model_dump(), "payouts": [p.to_dict() for p in payouts], "attribution": attribution,
               "state": "final", "finalized_at": int(time.time())}
        row["body"], row["signature"] = self._sign(row)
        with self.db.begin() as conn:
            done = conn.execute(update(receipts).where((receipts.c.id == receipt_id)
                                                       & (receipts.c.state == "attributing"))
                                .values(payouts=row["payouts"], attribution=attribution, state="final",
                                        finalized_at=row["finalized_at"], body=row["body"],
                                        signature=row["signature"]))
            if done.rowcount:  # the attach that finalised it names the contributors the receipt pays now
                name_accounts(conn, receipt_id, current.created_at, current.consumer, row["payouts"])
        return self.get(receipt_id)

    def _sign(self, row: dict) -> tuple[dict, str]:
        message = receipt_message(row, self.account.address)
        signed = self.account.sign_message(encode_typed_data(
            full_message=typed_data("InferenceReceipt", message, self.domain)))
        return message, "0x" + signed.signature.hex().removeprefix("0x")

    # ------------------------------------------------------------------ reading

    def get(self, receipt_id: str) -> Receipt:
        with self.db.connect() as conn:
            row = conn.execute(select(receipts).where(receipts.c.id == receipt_id)).mappings().first()
        if row is None:
            raise ReceiptError(f"no receipt {receipt_id!r}", field="receipt", status=404)
        return Receipt(**row)

    def answered(self, consumer: str, model_id: str, prompt, completion: str, *, newest: int = 1000) -> bool:
        """Whether the model answered `consumer` exactly `completion` to `prompt` on one of their `newest` calls."""
        with self.db.connect() as conn:
            for request in conn.execute(select(receipts.c.request).where(
                    receipts.c.consumer == consumer, receipts.c.model_id == model_id)
                    .order_by(receipts.c.created_at.desc()).limit(newest)).scalars():
                request = request or {}
                if request.get("completion") == completion and \
                        (request.get("messages") or request.get("prompt")) == prompt:
                    return True
        return False

    def consumer_copy(self, receipt_id: str, grant: ReadGrant | None) -> Receipt:
        """The receipt with the prompt and answer it was made for, for its consumer alone: `grant` is the read
        request they signed (None: none was sent), for every Datanet ("*"): one signed to read a single Datanet
        was given for that Datanet's records, not for the consumer's own prompts. Anyone else reads the public
        copy (`public`)."""
        receipt = self.get(receipt_id)
        if grant is None:
            raise ReceiptError(f"receipt {receipt_id}'s prompt and answer are its consumer's: sign a read request "
                               "as the consumer (`--as KEY`)", field="x-ledgerlm-read", status=401)
        if grant.datanet != ANY_DATANET:
            raise ReceiptError(f"the read request is for Datanet {grant.datanet!r} only: a receipt's prompt and answer "
                               f"need one signed for every Datanet ({ANY_DATANET!r}, the default of `--as KEY`)",
                               field="x-ledgerlm-read", status=403)
        reader = grant.reader
        if receipt.consumer is None:
            raise ReceiptError(f"receipt {receipt_id} is a free call's: no consumer can prove it is theirs, so its "
                               "prompt and answer stay private", field="receipt", status=403)
        if to_checksum_address(reader) != receipt.consumer:
            raise ReceiptError(f"receipt {receipt_id} belongs to consumer {receipt.consumer}, not to {reader}: "
                               "only its consumer reads its prompt and answer", field="x-ledgerlm-read", status=403)
        return receipt

    def list(self, *, account: str | None = None, model: str | None = None, state: str | None = None,
             limit: int = 100, before: str | None = None) -> list[Receipt]:
        """Newest first, at most `limit` (up to MAX_LISTED); `account` matches the consumer or anyone paid by the
        receipt; `before` (a receipt id: the last one of the previous page) continues the listing after it.

        Each page is read in index order, so its cost follows `limit`, not how many receipts the node holds."""
        if not 1 <= limit <= MAX_LISTED:
            raise ReceiptError(f"limit must be 1 to {MAX_LISTED}, got {limit}; page on with `before`",
                               field="limit", status=400)
        if account and not is_address(account):
            raise ReceiptError(f"account must be an address, got {account!r}", field="account", status=400)
        if account:
            order = (receipt_accounts.c.created_at, receipt_accounts.c.receipt_id)
            query = (select(receipts).join(receipt_accounts, receipt_accounts.c.receipt_id == receipts.c.id)
                     .where(receipt_accounts.c.account == to_checksum_address(account)))
        else:
            order = (receipts.c.created_at, receipts.c.id)
            query = select(receipts)
        if model:
            query = query.where(receipts.c.model_id == model)
        if state:
            query = query.where(receipts.c.state == state)
        with self.db.connect() as conn:
            if before is not None:
                created = conn.execute(select(receipts.c.created_at).where(receipts.c.id == before)).scalar()
                if created is None:
                    raise ReceiptError(f"no receipt {before!r} to list receipts before", field="before", status=404)
                query = query.where(tuple_(*order) < tuple_(created, before))
            query = query.order_by(*(c.desc() for c in order)).limit(limit)
            return [Receipt(**r) for r in conn.execute(query).mappings()]

    def pending(self) -> list[str]:
        with self.db.connect() as conn:
            return list(conn.execute(select(receipts.c.id).where(receipts.c.state == "attributing")
                                     .order_by(receipts.c.created_at)).scalars())

    def verify(self, receipt: Receipt) -> dict:
        checks = verify_receipt(receipt, domain=self.domain)
        checks["signed_by_this_node"] = checks["signer"] == self.account.address
        return checks


def public(receipt: Receipt, *, records_shown: bool = True) -> dict:
    """A receipt as shown to anyone but its consumer: the prompt and answer left out (their hash stays
    in the signed body), the parties the split is computed for kept. Without `records_shown` (a model of a
    private Datanet, read by one who may not read it) its attribution is `public_attribution`'s."""
    data = shown(receipt, records_shown=records_shown)
    data["request"] = {"split": (receipt.request or {}).get("split")}
    return data


def shown(receipt: Receipt, *, records_shown: bool) -> dict:
    """The receipt whole, or with only `public_attribution` of its attribution."""
    data = receipt.model_dump()
    if not records_shown:
        data["attribution"] = public_attribution(receipt.attribution)
    return data


def receipt_datanet(receipt: Receipt) -> str | None:
    """The Datanet the receipt's model was trained on (None: a base model)."""
    return ((receipt.request or {}).get("split") or {}).get("datanet")


def public_attribution(attribution: dict | None) -> dict | None:
    """The part of an attribution anyone may read when the model's Datanet is private: what the split check reads
    (contributor and evidence bps, the data pool's part). `withheld` names what was left out, so a reader knows
    the signed attribution hash covers more than they were shown."""
    if attribution is None:
        return None
    kept = {k: attribution[k] for k in PUBLIC_ATTRIBUTION if k in attribution}
    return {**kept, "withheld": sorted(set(attribution) - set(kept))}


def private_models(conn: Connection, model_ids) -> set[str]:
    """Those of `model_ids` trained on a private Datanet."""
    ids = sorted(set(model_ids))
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        found.update(conn.execute(select(models.c.id).join(datanets, datanets.c.name == models.c.datanet).where(
            and_(models.c.id.in_(ids[start:start + 500]), datanets.c.visibility == "private"))).scalars())
    return found


def published_receipts(conn: Connection, rows: list) -> list[dict]:
    """Receipt rows (with `model_id` and `attribution`) as an epoch publishes them for anyone: those of a model
    trained on a private Datanet with `public_attribution` only."""
    private = private_models(conn, [r["model_id"] for r in rows])
    return [{**r, "attribution": public_attribution(r["attribution"])} if r["model_id"] in private else dict(r)
            for r in rows]


def name_accounts(conn: Connection, receipt_id: str, created_at: int, consumer: str | None,
                  payouts: list[dict]) -> None:
    """Keep `receipt_accounts` to exactly the receipt's consumer and the accounts its payouts pay."""
    named = ({consumer} | {p.get("account") for p in payouts}) - {None}
    present = set(conn.execute(select(receipt_accounts.c.account)
                               .where(receipt_accounts.c.receipt_id == receipt_id)).scalars())
    if named - present:
        conn.execute(insert(receipt_accounts), [{"account": a, "receipt_id": receipt_id, "created_at": created_at}
                                                for a in sorted(named - present)])
    if present - named:
        conn.execute(delete(receipt_accounts).where(and_(receipt_accounts.c.receipt_id == receipt_id,
                                                         receipt_accounts.c.account.in_(sorted(present - named)))))


def receipt_message(row: dict, node: str) -> dict:
    """The EIP-712 `InferenceReceipt` message the node signs for a receipt row."""
    return {
        "node": node, "receiptId": row["id"], "epoch": int(row["epoch"]),
        "consumer": row["consumer"] or ZERO_ADDRESS, "modelId": row["model_id"],
        "adapterHash": "0x" + row["adapter_sha256"] if row["adapter_sha256"] else ZERO_HASH,
        "promptTokens": row["prompt_tokens"], "completionTokens": row["completion_tokens"],
        "pricePer1k": int(row["price_per_1k"]), "fee": int(row["fee"]),
        "feePolicyHash": json_hash(row["fee_policy"]), "payoutsHash": json_hash(row["payouts"]),
        "datanetRootsHash": json_hash(row["datanet_roots"]), "attributionHash": json_hash(row["attribution"]),
        "requestHash": json_hash(row["request"]), "state": row["state"], "createdAt": row["created_at"],
    }


def verify_receipt(receipt: Receipt, *, domain: SigningDomain) -> dict:
    """Check a receipt without trusting the node: the fee is its tokens at its price, the split sums to the fee
    and is recomputed from the receipt's own inputs, the signed body matches the stored fields, and who signed it.

    The request hash is checked only when the receipt carries its prompt and answer (its consumer's copy).
    """
    payouts = [Payout.from_dict(p) for p in receipt.payouts]
    attribution = receipt.attribution or {}
    parties = (receipt.request or {}).get("split") or {}
    recomputed = split_fee(int(receipt.fee), FeeShares.from_dict(receipt.fee_policy), **parties,
                           contributor_bps=attribution.get("contributor_bps"),
                           evidence_bps=attribution.get("evidence_bps", 0))
    expected = receipt_message(receipt.model_dump(), receipt.body.get("node", ""))
    has_text = "completion" in (receipt.request or {})
    # a public copy of a private Datanet's receipt carries part of the attribution the node signed
    whole = "withheld" not in attribution
    fields = [k for k in expected if (has_text or k != "requestHash") and (whole or k != "attributionHash")]
    try:
        signer = recover_signer(typed_data("InferenceReceipt", receipt.body, domain), receipt.signature,
                                what="the receipt's")
    except AuthError:  # a mangled signature verifies as nobody
        signer = None
    paid = {a: int(b) for a, b in (attribution.get("contributor_bps") or {}).items()}
    listed = {c.get("contributor"): int(c.get("bps", 0)) for c in attribution.get("contributors", [])}
    return {
        # the paid map is the attribution's own: its contributors' bps (when shown), summing to evidence_bps
        "attribution_pays_its_contributors": sum(paid.values()) == int(attribution.get("evidence_bps", 0) or 0)
        and (not whole or not attribution or paid == listed),
        # the fee is the tokens at the signed price, rounded up: a node cannot sign a fee its counts do not make
        "fee_recomputed": int(receipt.fee) == price_fee(receipt.prompt_tokens, receipt.completion_tokens,
                                                        int(receipt.price_per_1k)),
        "split_sums_to_fee": sum(p.amount for p in payouts) == int(receipt.fee),
        "split_recomputed": recomputed == payouts,
        "body_matches": all(expected[k] == receipt.body.get(k) for k in fields),
        "request_checked": has_text,
        "attribution_checked": whole,
        "signer": signer,
        "signature_valid": signer is not None and signer == receipt.body.get("node"),
    }


class AttributionWorker:
    """Attributes finished answers one at a time, after their responses were sent, and finalises receipts."""

    def __init__(self, log: ReceiptLog, attribute: Callable[[str, object, str], object]):
        self.log = log
        self.attribute = attribute  # (model id, prompt or messages, answer) -> AttributionResult
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, receipt_id: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledgerlm-attribution", daemon=True)
                self._thread.start()
        self._queue.put(receipt_id)

    def resume(self) -> int:
        """Queue every receipt a previous run left `attributing`; returns how many."""
        pending = self.log.pending()
        for receipt_id in pending:
            self.submit(receipt_id)
        return len(pending)

    def finish_pending(self) -> int:
        """Attribute every receipt still `attributing` now, in the calling thread (an epoch close does, so it
        settles them in the epoch of their calls); returns how many were waiting. A receipt the worker finishes
        meanwhile is left as the worker finalised it."""
        pending = self.log.pending()
        for receipt_id in pending:
            self._finish(receipt_id)
        return len(pending)

    def drain(self, timeout: float = 120.0) -> None:
        """Wait until every queued receipt is final (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            receipt_id = self._queue.get()
            try:
                if receipt_id is None:
                    return
                self._finish(receipt_id)
            except Exception:  # the receipt stays `attributing` and is retried at the next start
                traceback.print_exc()
            finally:
                self._queue.task_done()

    def _finish(self, receipt_id: str) -> None:
        from ledgerlm.errors import LedgerError

        receipt = self.log.get(receipt_id)
        if receipt.state != "attributing":
            return
        request = receipt.request or {}
        prompt = request.get("messages") or request.get("prompt") or ""
        answer = request.get("completion", "")
        if not answer.strip():  # nothing was said, so nobody shaped it
            result = None
        else:
            try:
                result = self.attribute(receipt.model_id, prompt, answer)
            except LedgerError as exc:  # no index, or an answer attribution cannot read: pay the data pool
                # the receipt is public: a fixed reason (an index's error names the model's folder on this node)
                log.warning("attribution of receipt %s refused: %s", receipt_id, exc.message)
                result = {"error": ATTRIBUTION_FAILED}
            except Exception:  # a receipt that can never finish would never be settled: finish it, log why
                # the receipt is public: what broke (and the text it broke on) stays in the operator's log
                log.exception("attribution of receipt %s failed", receipt_id)
                result = {"error": ATTRIBUTION_FAILED}
        self.log.attach(receipt_id, result)
