"""The typed data a browser wallet signs: built by the same functions the CLI signs with, for this node's domain."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter, Request
from pydantic import BaseModel, ValidationError

from ledgerlm.chain import CAP_LIMIT, cap_nonce
from ledgerlm.datanets import DatanetSpec, FileEntry, manifest_hash
from ledgerlm.errors import AuthError, LedgerError
from ledgerlm.identity import ACTIONS, action_message, check_field, read_request, typed_data

router = APIRouter()

# What the page supplies itself; the actor, nonce and deadline are filled in here, and the hashes of a
# spec or a manifest are computed here from what the page will send, as the CLI computes them.
DERIVED = {"CreateDatanet": {"name", "specHash"}, "Contribute": {"manifestHash"}, "CreateApiKey": {"capNonce", "capDeadline"},
           "TrainModel": {"modelId", "datanet", "version", "configHash"}}
JS_SAFE_INTEGER = 2**53 - 1
UINT256_DIGITS = len(str(2**256 - 1))
API_KEY_DAYS = 30


class TypedDataRequest(BaseModel):
    action: str
    signer: str
    fields: dict[str, Any] = {}
    spec: dict[str, Any] | None = None  # CreateDatanet: the spec whose hash is signed
    manifest: list[tuple[str, str, int]] | None = None  # Contribute: [name, sha256, size] per file, in upload order
    train: dict[str, Any] | None = None  # TrainModel: the training request whose config hash is signed


def wallet_json(typed: dict) -> str:
    """The typed data as the wallet gets it: integers a browser's JSON would round are sent as decimal
    strings, which EIP-712 encodes as the same uint256 (the digest does not change)."""

    def safe(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and abs(value) > JS_SAFE_INTEGER:
            return str(value)
        if isinstance(value, dict):
            return {k: safe(v) for k, v in value.items()}
        if isinstance(value, list):
            return [safe(v) for v in value]
        return value

    return orjson.dumps(safe(typed)).decode()


def _first_error(exc: ValidationError, prefix: str) -> LedgerError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return LedgerError(f"{prefix}.{where}: {first.get('msg', 'invalid')}", field=where or prefix)


@router.post("/web/typed-data")
def prepare(body: TypedDataRequest, request: Request) -> dict:
    """The exact EIP-712 message for `action` signed by `signer`, with a fresh nonce and deadline.

    Answers the typed data as JSON text (`typed`, for eth_signTypedData_v4) and the message as JSON text
    (`message`, to post back unchanged with the signature), so no number passes through a float."""
    node = request.app.state.node
    if body.action not in ACTIONS or body.action in ("ReadRequest", "InferenceReceipt", "ContributionReceipt"):
        raise AuthError(f"the dashboard does not sign {body.action!r}", field="action")
    if not is_address(body.signer):
        raise AuthError(f"signer {body.signer!r} is not an address; connect a wallet", field="signer")
    signer = to_checksum_address(body.signer)
    names = [n for n, _ in ACTIONS[body.action]][1:-2]  # between the actor and nonce/deadline
    fields = {k: v for k, v in body.fields.items() if k not in DERIVED.get(body.action, ())}
    extra = {"spec": None}
    if body.action == "CreateDatanet":
        try:
            spec = DatanetSpec.model_validate(body.spec or {})
        except ValidationError as exc:
            raise _first_error(exc, "spec") from None
        fields.update(name=spec.name, specHash=spec.spec_hash())
        extra["spec"] = orjson.dumps(spec.model_dump(by_alias=True)).decode()
    elif body.action == "Contribute":
        if not body.manifest:
            raise LedgerError("choose at least one file to upload", field="files")
        try:
            files = [FileEntry(name=n, sha256=s, size=z) for n, s, z in body.manifest]
        except ValidationError as exc:
            raise _first_error(exc, "manifest") from None
        fields["manifestHash"] = manifest_hash(files)
    elif body.action == "TrainModel":
        from ledgerlm.factory.jobs import TrainRequest

        try:
            train = TrainRequest.model_validate(body.train or {})
        except ValidationError as exc:
            raise _first_error(exc, "request") from None
        train.train_config()  # an unknown or invalid setting is named before anything is signed
        fields.update(modelId=train.model_id, datanet=train.datanet, version=train.version,
                      configHash=train.config_hash())
        extra["train"] = orjson.dumps(train.model_dump()).decode()
    elif body.action == "CreateApiKey":
        terms = node.serving.keys.terms()
        try:
            # a whole number only: int(5.5) or int(True) would sign a cap the user did not write
            raw = fields.get("cap", 0)
            if isinstance(raw, bool | float) or (isinstance(raw, str) and not raw.strip().isdigit()):
                raise ValueError(raw)
            cap = int(raw)
        except (TypeError, ValueError):
            raise LedgerError(f"cap must be a whole number of base units, got {fields.get('cap')!r}", field="cap") from None
        if not 0 < cap < CAP_LIMIT:  # the escrow stores a cap in 96 bits
            raise LedgerError(f"cap must be more than 0 and below {CAP_LIMIT} base units, got {cap}", field="cap")
        deadline = int(time.time()) + API_KEY_DAYS * 86_400
        fields.update(cap=cap, capNonce=cap_nonce(), capDeadline=deadline)
        if node.on_chain:
            extra["cap_typed"] = wallet_json(node.contracts.escrow.spending_cap_typed_data(
                signer, terms["settler"], cap, fields["capNonce"], deadline))
    missing = [n for n in names if n not in fields]
    unknown = [k for k in fields if k not in names]
    if missing or unknown:
        raise LedgerError(f"{body.action} needs {', '.join(names)}: missing {missing or 'none'}, "
                          f"unknown {unknown or 'none'}", field=(missing or unknown)[0])
    kinds = dict(ACTIONS[body.action])
    for name in names:  # a page sends big integers as decimal strings, which JSON numbers cannot hold
        if kinds[name].startswith("uint") and isinstance(fields[name], str) and _decimal(fields[name]):
            fields[name] = int(fields[name])
    for name in names:  # what the node would refuse once signed is refused before the wallet is asked
        try:
            check_field(body.action, name, kinds[name], fields[name])
        except LedgerError as exc:
            raise LedgerError(exc.message, field=exc.field) from None
    message = action_message(body.action, signer, {n: fields[n] for n in names})
    # json, not orjson: a uint256 past 64 bits stays one exact integer in the text the page posts back
    return {"action": body.action, "typed": wallet_json(typed_data(body.action, message, node.domain)),
            "message": json.dumps(message, separators=(",", ":")), **extra}


def _decimal(text: str) -> bool:
    """ASCII digits a uint256 can hold (78 at most): int() reads other Unicode digits too, and refuses more than
    4,300 digits with an error that was no refusal naming the field; anything else is left to `check_field`."""
    return text.isascii() and text.isdigit() and len(text) <= UINT256_DIGITS


class ReadRequestBody(BaseModel):
    signer: str


@router.post("/web/read-request")
def prepare_read(body: ReadRequestBody, request: Request) -> dict:
    """A ReadRequest for every Datanet, as the CLI's `--as` signs one: the typed data for the wallet and the
    header value it completes (`reader:node:*:expiry`, then `:signature`), bound to this node's key."""
    if not is_address(body.signer):
        raise AuthError(f"signer {body.signer!r} is not an address; connect a wallet", field="signer")
    node = request.app.state.node
    typed, prefix = read_request(body.signer, node.domain, node=node.account.address)
    return {"typed": wallet_json(typed), "prefix": prefix}
