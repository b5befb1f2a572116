"""The Python SDK: signs actions locally and talks to a node over HTTP (the CLI and agents use it)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx
import orjson

from ledgerlm.datanets import (
    MAX_CONTRIBUTIONS_PAGE,
    MAX_PAYLOAD_PAGE,
    NEXT_OFFSET_HEADER,
    Contribution,
    Datanet,
    DatanetSpec,
    DatanetVersion,
    FileEntry,
    ReviewBatch,
    UploadReceipt,
    manifest_hash,
)
from ledgerlm.errors import AuthError, ConflictError, LedgerError, NotFoundError

if TYPE_CHECKING:  # signing modules load only when something is signed: reads start faster
    from eth_account.signers.local import LocalAccount

    from ledgerlm.identity import SigningDomain
    from ledgerlm.identity.known_nodes import KnownNodes

_BY_STATUS = {401: AuthError, 403: AuthError, 404: NotFoundError, 409: ConflictError}


_DATANET_PATH = re.compile(r"/datanets/([^/?#]+)")


class NodeClient:
    """Wraps any httpx.Client: a real server (`NodeClient.connect(url)`) or the in-process app.

    Every read request it signs names the node's key as GET /node/info reports it, so no other node accepts it.
    `known_nodes` (the CLI passes its home's) also pins each node URL to the key and domain it first reported: a
    read request is then refused for a URL that changed, or that claims a key this home knows at another URL.
    Without it (an SDK client built on its own) nothing is pinned, and a hostile node may still claim another
    node's key and collect read requests that node accepts.
    """

    def __init__(self, http: httpx.Client, *, operator_token: str | None = None, reader: LocalAccount | None = None,
                 known_nodes: KnownNodes | None = None):
        self.http = http
        self._info: dict | None = None
        self.reader = reader  # signs a short-lived read request on every GET (private Datanets)
        self.known_nodes = known_nodes
        if operator_token:
            self.http.headers["Authorization"] = f"Bearer {operator_token}"

    @classmethod
    def connect(cls, url: str, *, timeout: float = 600.0, operator_token: str | None = None,
                known_nodes: KnownNodes | None = None) -> NodeClient:
        return cls(httpx.Client(base_url=url.rstrip("/"), timeout=timeout), operator_token=operator_token,
                   known_nodes=known_nodes)

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, *, reader: LocalAccount | None = None, **kwargs) -> Any:
        """`reader` signs this request's read instead of the client's own (`self.reader`)."""
        response = self._response(method, path, reader=reader, **kwargs)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response

    def _response(self, method: str, path: str, *, reader: LocalAccount | None = None, **kwargs) -> httpx.Response:
        """The node's answer, its headers included; an error answer raised as the error it names."""
        reader = reader or self.reader
        if reader is not None and method == "GET" and path != "/node/info":
            from ledgerlm.identity import READ_HEADER

            headers = dict(kwargs.pop("headers", None) or {})
            # a read of one Datanet's routes is granted for that Datanet alone: a grant the node (or whoever holds
            # it for its two minutes) could use on other routes would read every private Datanet of the reader
            named = _DATANET_PATH.match(path)
            headers[READ_HEADER] = self.read_header(reader, **({"datanet": unquote(named.group(1))} if named else {}))
            kwargs["headers"] = headers
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise LedgerError(f"cannot reach the node at {self.http.base_url}: {exc}", field="node", status=503) from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except Exception:
                raise LedgerError(f"node answered HTTP {response.status_code}: {response.text[:500]}",
                                  status=response.status_code) from None
            kind = _BY_STATUS.get(response.status_code, LedgerError)
            raise kind(error.get("message", "request failed"), field=error.get("field"), status=response.status_code)
        return response

    def sign_spending_cap(self, account: LocalAccount, cap: int, *, days: int = 30) -> dict:
        """Sign, locally, a standing cap on what this node may debit from the account's escrow per cap period,
        and hand it to the node, which relays it to the escrow (it replaces the account's earlier cap there)."""
        message, signature = self._signed_cap(account, cap, days=days)
        return self._request("POST", "/economy/caps", json={**message, "signature": signature})

    def ensure_spending_cap(self, account: LocalAccount, amount: int) -> dict:
        """Make sure the account's cap for this node has `amount` left in this period: if not, sign one raised by
        what is missing (a cap with room already is left as it is). Returns the cap in force."""
        held = self.spending_cap(account.address)
        if int(held["left"]) >= int(amount):
            return held
        self.sign_spending_cap(account, int(held["spent"]) + int(amount))
        return self.spending_cap(account.address)

    def spending_cap(self, consumer: str) -> dict:
        """The cap `consumer` gives this node on chain: cap per period, nonce, spent and left this period."""
        return self._request("GET", f"/economy/caps/{consumer}")

    def _signed_cap(self, account: LocalAccount, cap: int, *, days: int) -> tuple[dict, str]:
        import time

        from eth_account.messages import encode_typed_data

        from ledgerlm.chain.contracts import cap_nonce

        terms = self._request("GET", "/apikeys/terms")
        message = {"consumer": account.address, "settler": terms["settler"], "cap": int(cap), "nonce": cap_nonce(),
                   "deadline": int(time.time()) + days * 86_400}
        typed = {"types": terms["spending_cap_types"], "primaryType": "SpendingCap",
                 "domain": terms["spending_cap_domain"], "message": message}
        signature = account.sign_message(encode_typed_data(full_message=typed)).signature.hex().removeprefix("0x")
        return message, "0x" + signature

    def info(self) -> dict:
        if self._info is None:
            self._info = self._request("GET", "/node/info")
        return self._info

    def attribute(
        self, model: str, prompt, answer: str | None = None, max_new_tokens: int = 64,
        account: LocalAccount | None = None,
    ) -> dict:
        return attribute(self, model, prompt, answer, max_new_tokens, account)

    @property
    def validation(self) -> ValidationActions:
        return ValidationActions(self)

    @property
    def factory(self) -> FactoryActions:
        return FactoryActions(self)

    @property
    def chain(self) -> ChainActions:
        return ChainActions(self)

    @property
    def serving(self) -> ServingActions:
        return ServingActions(self)

    @property
    def shares(self) -> SharesActions:
        return SharesActions(self)

    @property
    def agents(self) -> AgentActions:
        return AgentActions(self)

    @property
    def providers(self) -> ProviderActions:
        return ProviderActions(self)

    @property
    def chain_id(self) -> int:
        return int(self.info()["chain_id"])

    @property
    def domain(self) -> SigningDomain:
        """The node's EIP-712 domain (chain id and Registry): signatures are valid only there."""
        from ledgerlm.identity import SigningDomain

        return SigningDomain.from_dict(self.info()["signing_domain"])

    def read_header(self, account: LocalAccount, *, datanet: str = "*") -> str:
        """An X-Ledgerlm-Read value signed by `account` for this node alone (its key, as /node/info reports it),
        once the known nodes, where kept, agree that this URL is that node."""
        from ledgerlm.identity import sign_read_request

        info = self.info()
        if not isinstance(info.get("node_address"), str) or not isinstance(info.get("signing_domain"), dict):
            raise AuthError(f"the node at {self.http.base_url} names no node_address and signing_domain in"
                            " /node/info; a read request is signed for one node's key", field="node")
        if self.known_nodes is not None:
            self.known_nodes.check(str(self.http.base_url), info["node_address"], info["signing_domain"])
        return sign_read_request(account, self.domain, node=info["node_address"], datanet=datanet)

    def _sign(self, account: LocalAccount, action: str, fields: dict) -> dict:
        from ledgerlm.identity import sign_action

        return sign_action(account, action, fields, domain=self.domain).model_dump()

    # ------------------------------------------------------------------ Datanets

    def create_datanet(self, spec: DatanetSpec, account: LocalAccount) -> Datanet:
        action = self._sign(account, "CreateDatanet", {"name": spec.name, "specHash": spec.spec_hash()})
        body = {"spec": spec.model_dump(by_alias=True), "action": action}
        return Datanet.model_validate(self._request("POST", "/datanets", json=body))

    def datanets(self) -> list[Datanet]:
        """Every Datanet this reader may see, read a page at a time (the node says where the next starts)."""
        found: list[Datanet] = []
        offset: int | None = 0
        while offset is not None:
            response = self._response("GET", "/datanets", params={"offset": offset})
            found += [Datanet.model_validate(d) for d in response.json()]
            following = response.headers.get(NEXT_OFFSET_HEADER)
            offset = int(following) if following is not None else None
        return found

    def datanet(self, name: str) -> Datanet:
        return Datanet.model_validate(self._request("GET", f"/datanets/{name}"))

    def contribute(
        self, name: str, paths: list[Path], account: LocalAccount, *, skip_duplicates: bool = False
    ) -> UploadReceipt:
        """Hash the files, sign their manifest once, upload them as one batch."""
        paths = [Path(p) for p in paths]
        entries = [FileEntry(name=p.name, sha256=_sha256(p), size=p.stat().st_size) for p in paths]
        action = self._sign(account, "Contribute", {"datanet": name, "manifestHash": manifest_hash(entries)})
        with ExitStack() as stack:
            files = [("files", (p.name, stack.enter_context(open(p, "rb")))) for p in paths]
            # The action and the signed manifest come first: the node checks both before any file byte.
            data = {
                "action": orjson.dumps(action).decode(),
                "manifest": orjson.dumps([[e.name, e.sha256, e.size] for e in entries]).decode(),
                "skip_duplicates": str(skip_duplicates).lower(),
            }
            result = self._request("POST", f"/datanets/{name}/contributions", data=data, files=files)
        return UploadReceipt.model_validate(result)

    def contributions(
        self, name: str, *, state: str | None = None, limit: int = 100, offset: int = 0,
        payload: bool = False, events: bool = False,
    ) -> list[Contribution]:
        """Up to `limit` contributions from `offset` on, read a page at a time: the node answers at most
        MAX_CONTRIBUTIONS_PAGE (MAX_PAYLOAD_PAGE with `payload`) a page, and says where the next one starts."""
        found: list[Contribution] = []
        next_offset: int | None = offset
        while next_offset is not None and len(found) < limit:
            page = min(limit - len(found), MAX_PAYLOAD_PAGE if payload else MAX_CONTRIBUTIONS_PAGE)
            params: dict[str, Any] = {"limit": page, "offset": next_offset, "payload": payload, "events": events}
            if state:
                params["state"] = state
            response = self._response("GET", f"/datanets/{name}/contributions", params=params)
            found += [Contribution.model_validate(c) for c in response.json()]
            following = response.headers.get(NEXT_OFFSET_HEADER)
            next_offset = int(following) if following is not None else None
        return found

    def contribution(self, contribution_id: int) -> Contribution:
        return Contribution.model_validate(self._request("GET", f"/contributions/{contribution_id}"))

    def withdraw(self, contribution_id: int, account: LocalAccount) -> Contribution:
        action = self._sign(account, "WithdrawContribution", {"contributionId": contribution_id})
        return Contribution.model_validate(
            self._request("POST", f"/contributions/{contribution_id}/withdraw", json={"action": action})
        )

    def review(self, contribution_id: int, account: LocalAccount, *, accept: bool, reason: str = "") -> Contribution:
        action = self._sign(
            account, "ReviewContribution", {"contributionId": contribution_id, "accept": accept, "reason": reason}
        )
        return Contribution.model_validate(
            self._request("POST", f"/contributions/{contribution_id}/review", json={"action": action})
        )

    def review_many(self, name: str, contribution_ids: list[int], account: LocalAccount, *, accept: bool,
                    reason: str = "") -> ReviewBatch:
        """Accept or reject these pending contributions of one Datanet under a single signature."""
        action = self._sign(account, "ReviewContributions", {
            "datanet": name, "contributionIds": list(contribution_ids), "accept": accept, "reason": reason})
        return ReviewBatch.model_validate(self._request("POST", f"/datanets/{name}/reviews", json={"action": action}))

    def publish(self, name: str, account: LocalAccount) -> DatanetVersion:
        action = self._sign(account, "PublishVersion", {"datanet": name})
        return DatanetVersion.model_validate(self._request("POST", f"/datanets/{name}/versions", json={"action": action}))

    def members(self, name: str) -> list[str]:
        return self._request("GET", f"/datanets/{name}/members")

    def add_member(self, name: str, member: str, account: LocalAccount) -> list[str]:
        action = self._sign(account, "AddMember", {"datanet": name, "member": member})
        return self._request("POST", f"/datanets/{name}/members", json={"action": action})

    def set_owner_share(self, name: str, bps: int, account: LocalAccount) -> dict:
        """The owner's share (basis points) of the Datanet's revenue shares, kept in its policy until issue."""
        action = self._sign(account, "SetOwnerShare", {"datanet": name, "ownerBps": int(bps)})
        return self._request("POST", f"/datanets/{name}/owner-share", json={"action": action})

    def access_prices(self, name: str) -> dict:
        return self._request("GET", f"/datanets/{name}/price")

    def set_access_price(self, name: str, price: int, account: LocalAccount, *, version: int = 0) -> dict:
        """The owner's price (base units) to train on a private Datanet's `version` (0: every version)."""
        action = self._sign(account, "SetAccessPrice", {"datanet": name, "version": version, "price": int(price)})
        return self._request("POST", f"/datanets/{name}/price", json={"action": action})

    def remove_member(self, name: str, member: str, account: LocalAccount) -> list[str]:
        action = self._sign(account, "RemoveMember", {"datanet": name, "member": member})
        return self._request("POST", f"/datanets/{name}/members", json={"action": action})

    def version(self, name: str, number: int) -> DatanetVersion:
        return DatanetVersion.model_validate(self._request("GET", f"/datanets/{name}/versions/{number}"))

    def manifest(self, name: str, number: int) -> dict:
        return self._request("GET", f"/datanets/{name}/versions/{number}/manifest")

    def buy_export_licence(self, name: str, number: int, account: LocalAccount, pay: int) -> dict | None:
        """Pay (at most `pay` base units, from escrow, within the account's spending cap for this node, raised to
        leave that much if it must) for the licence to export a priced private version; one already held costs
        nothing. None: it is free."""
        self.ensure_spending_cap(account, int(pay))
        action = self._sign(account, "PayAccess", {"datanet": name, "version": number, "amount": int(pay),
                                                   "modelId": "", "purpose": "export"})
        return self._request("POST", f"/datanets/{name}/versions/{number}/licence", json={"action": action})

    def export(self, name: str, number: int, fmt: str, out: Path) -> dict:
        """Write one version to `out`; `hf` is built locally from the node's Parquet."""
        out = Path(out)
        wire = "parquet" if fmt == "hf" else fmt
        from ledgerlm.datanets.export import check_export_path

        check_export_path(out, fmt)  # before the request: a licence or a download is not spent on a path refused after
        response = self._request("GET", f"/datanets/{name}/versions/{number}/export", params={"format": wire})
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt != "hf":
            tmp = out.with_name(out.name + ".partial")
            tmp.write_bytes(response.content)
            tmp.replace(out)
            return {"datanet": name, "version": number, "format": fmt, "path": str(out), "bytes": out.stat().st_size}
        import tempfile

        import pyarrow.parquet as pq

        from ledgerlm.datanets.export import write_export

        with tempfile.NamedTemporaryFile(suffix=".parquet") as tmp:
            tmp.write(response.content)
            tmp.flush()
            rows = pq.read_table(tmp.name).to_pylist()
        return write_export(iter(rows), "hf", out, version=self.version(name, number))


def attribute(
    node: NodeClient, model: str, prompt, answer: str | None = None, max_new_tokens: int = 64,
    account: LocalAccount | None = None,
) -> dict:
    """Which contributions shaped an answer (generated first when `answer` is None).

    Without the operator token, `account` signs a RequestAttribution over the request."""
    body: dict[str, Any] = {"model": model, "prompt": prompt, "answer": answer, "max_new_tokens": max_new_tokens}
    if account is not None:
        request_hash = "0x" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        body["action"] = node._sign(account, "RequestAttribution", {"model": model, "requestHash": request_hash})
    return node._request("POST", "/attribution", json=body)


class ValidationActions:
    """Gate policy and validator rounds; commit keeps the votes and salt for the reveal."""

    def __init__(self, node: NodeClient):
        self.node = node

    def policy(self, name: str) -> dict:
        return self.node._request("GET", f"/datanets/{name}/gate-policy")

    def set_policy(self, account: LocalAccount, name: str, policy: dict) -> dict:
        from ledgerlm.validation.rounds import policy_hash

        action = self.node._sign(account, "SetGatePolicy", {"datanet": name, "policyHash": policy_hash(policy)})
        return self.node._request("PUT", f"/datanets/{name}/gate-policy", json={"policy": policy, "action": action})

    def open_round(self, account: LocalAccount, name: str) -> dict:
        action = self.node._sign(account, "OpenRound", {"datanet": name})
        return self.node._request("POST", f"/datanets/{name}/rounds", json={"action": action})

    def queue(self, address: str, reader: LocalAccount | None = None) -> list[dict]:
        """`address`'s assignments; a private Datanet's data shows only when `reader` (signing the
        read) is that validator and may still read the Datanet."""
        return self.node._request("GET", f"/validation/queue/{address}", reader=reader)

    def round(self, round_id: int) -> dict:
        return self.node._request("GET", f"/validation/rounds/{round_id}")

    def commit(self, account: LocalAccount, round_id: int, votes: dict[int, int], salt: bytes | None = None) -> tuple[dict, bytes]:
        """Returns the round and the salt: keep it (with the votes) for the reveal."""
        import secrets

        from ledgerlm.validation.consensus import commit_hash

        salt = salt or secrets.token_bytes(32)
        commit = commit_hash(round_id, account.address, votes, salt)
        action = self.node._sign(account, "CommitVotes", {"roundId": round_id, "commit": commit})
        return self.node._request("POST", f"/validation/rounds/{round_id}/commit", json={"action": action}), salt

    def reveal(self, account: LocalAccount, round_id: int, votes: dict[int, int], salt: bytes) -> dict:
        from ledgerlm.validation.consensus import commit_hash

        commit = commit_hash(round_id, account.address, votes, salt)
        action = self.node._sign(account, "RevealVotes", {"roundId": round_id, "commit": commit})
        body = {"votes": {str(k): v for k, v in votes.items()}, "salt": "0x" + salt.hex(), "action": action}
        return self.node._request("POST", f"/validation/rounds/{round_id}/reveal", json=body)

    def tally(self, account: LocalAccount, round_id: int) -> dict:
        action = self.node._sign(account, "TallyRound", {"roundId": round_id})
        return self.node._request("POST", f"/validation/rounds/{round_id}/tally", json={"action": action})

    def reputation(self, address: str) -> dict:
        return self.node._request("GET", f"/reputation/{address}")


class FactoryActions:
    """ModelFactory through the node: base models, training jobs, fine-tuned models."""

    def __init__(self, node: NodeClient):
        self.node = node

    def base_models(self) -> list[dict]:
        return self.node._request("GET", "/models/base")

    def pull(self, name: str = "smollm2-135m") -> dict:
        return self.node._request("POST", "/models/base/pull", json={"name": name})

    def register_base(self, name: str, path: str) -> dict:
        return self.node._request("POST", "/models/base", json={"name": name, "path": path})

    def models(self, limit: int | None = None) -> list[dict]:
        """Fine-tuned models the client may see, oldest first: at most `limit` (every one when None), read a page
        at a time."""
        from ledgerlm.factory.jobs import MAX_MODELS_LISTED, NEXT_AFTER_HEADER

        return self._pages("/models", limit, MAX_MODELS_LISTED, "after", NEXT_AFTER_HEADER)

    def _pages(self, path: str, limit: int | None, most: int, cursor: str, header: str) -> list[dict]:
        """A listing read a page of at most `most` at a time, each starting where the last one's `header` says
        (`cursor` is the query parameter that takes it), until `limit` (None: until no header comes)."""
        found: list[dict] = []
        where: str | None = None
        while limit is None or len(found) < limit:
            page = most if limit is None else min(most, limit - len(found))
            params = {"limit": page} if where is None else {"limit": page, cursor: where}
            response = self.node._response("GET", path, params=params)
            found += response.json()
            where = response.headers.get(header)
            if where is None:
                break
        return found

    def model(self, model_id: str, *, verify: bool = True, reader: LocalAccount | None = None) -> dict:
        """A model; one of a private Datanet, unpublished, only for a `reader` (or the client's) allowed to read it."""
        return self.node._request("GET", f"/models/{model_id}", params={"verify": verify}, reader=reader)

    def train(self, account: LocalAccount, request: dict, *, pay: int | None = None) -> dict:
        """Queue a training job; `pay` (base units) signs a PayAccess of at most that much for a priced private
        Datanet version (and raises the account's spending cap for this node if it has less than that left)."""
        from ledgerlm.factory.jobs import TrainRequest

        parsed = TrainRequest(**request)
        action = self.node._sign(account, "TrainModel", {
            "modelId": parsed.model_id, "datanet": parsed.datanet, "version": parsed.version,
            "configHash": parsed.config_hash(),
        })
        body = {"request": parsed.model_dump(), "action": action}
        if pay is not None:
            self.node.ensure_spending_cap(account, int(pay))
            body["payment"] = self.node._sign(account, "PayAccess", {
                "datanet": parsed.datanet, "version": parsed.version, "amount": int(pay), "modelId": parsed.model_id,
                "purpose": "train"})
        return self.node._request("POST", "/factory/jobs", json=body)

    def jobs(self, limit: int | None = None) -> list[dict]:
        """Training jobs, newest first: at most `limit` (every one when None), read a page at a time."""
        from ledgerlm.factory.jobs import MAX_JOBS_LISTED, NEXT_BEFORE_HEADER

        return self._pages("/factory/jobs", limit, MAX_JOBS_LISTED, "before", NEXT_BEFORE_HEADER)

    def job(self, job_id: int) -> dict:
        return self.node._request("GET", f"/factory/jobs/{job_id}")

    def control(self, account: LocalAccount, job_id: int, command: str) -> dict:
        action = self.node._sign(account, "ControlJob", {"jobId": job_id, "command": command})
        return self.node._request("POST", f"/factory/jobs/{job_id}/control", json={"action": action})

    def publish(self, account: LocalAccount, model_id: str, policy: dict | None = None,
                price_per_1k: int = 0) -> dict:
        """Publish with a fee policy (bps) and a price in base units per 1,000 tokens (0: free)."""
        from ledgerlm.factory.jobs import DEFAULT_FEE_POLICY

        policy = policy or DEFAULT_FEE_POLICY
        model = self.model(model_id, verify=False, reader=account)  # its developer may read its Datanet
        action = self.node._sign(account, "PublishModel", {
            "modelId": model_id, "adapterHash": "0x" + model["card"]["adapter_sha256"],
            "nodeBps": policy["node_bps"], "developerBps": policy["developer_bps"],
            "contributorsBps": policy["contributors_bps"], "validatorsBps": policy["validators_bps"],
            "pricePer1k": price_per_1k,
        })
        return self.node._request("POST", f"/models/{model_id}/publish", json={"action": action})

    def change_fee_policy(self, account: LocalAccount, model_id: str, policy: dict) -> dict:
        """Sign a new fee split (bps) for a published model; it prices calls from the next epoch."""
        action = self.node._sign(account, "SetFeePolicy", {
            "modelId": model_id, "nodeBps": policy["node_bps"], "developerBps": policy["developer_bps"],
            "contributorsBps": policy["contributors_bps"], "validatorsBps": policy["validators_bps"],
        })
        return self.node._request("POST", f"/models/{model_id}/fee-policy", json={"action": action})

    def merge(self, model_id: str) -> dict:
        return self.node._request("POST", f"/models/{model_id}/merge")


class ServingActions:
    """API keys (made and signed locally; the node stores only their hash) and receipts."""

    def __init__(self, node: NodeClient):
        self.node = node

    def create_key(self, account: LocalAccount, cap: int, *, days: int = 30, key: str | None = None) -> tuple[str, dict]:
        """A new `sk-lgr-` key (or `key`, made by the caller) under a standing cap of `cap` base units per cap period
        for this node (it replaces the account's earlier cap for the node): (the key, its record)."""
        from ledgerlm.serving.keys import key_sha256, new_api_key

        key = key or new_api_key()
        cap_message, cap_signature = self.node._signed_cap(account, cap, days=days)
        action = self.node._sign(account, "CreateApiKey", {
            "keyHash": "0x" + key_sha256(key), "cap": int(cap), "capNonce": cap_message["nonce"],
            "capDeadline": cap_message["deadline"]})
        record = self.node._request("POST", "/apikeys", json={"action": action, "cap_signature": cap_signature})
        return key, record

    def keys(self, consumer: str | None = None) -> list[dict]:
        return self.node._request("GET", "/apikeys", params={"consumer": consumer} if consumer else None)

    def revoke_key(self, account: LocalAccount, key_id: int) -> dict:
        action = self.node._sign(account, "RevokeApiKey", {"keyId": key_id})
        return self.node._request("POST", f"/apikeys/{key_id}/revoke", json={"action": action})

    def budget(self, key: str) -> dict:
        return self.node._request("GET", "/apikeys/me", headers={"Authorization": f"Bearer {key}"})

    def receipts(self, *, account: str | None = None, model: str | None = None, state: str | None = None,
                 limit: int = 100, before: str | None = None) -> list[dict]:
        """One page, newest first: at most `limit` (the node lists up to 1,000), after receipt `before`."""
        params = {k: v for k, v in {"account": account, "model": model, "state": state, "limit": limit,
                                    "before": before}.items() if v is not None}
        return self.node._request("GET", "/receipts", params=params)

    def every_receipt(self, *, account: str | None = None, model: str | None = None,
                      state: str | None = None) -> Iterator[dict]:
        """Every receipt the filters match, newest first, read a page at a time."""
        from ledgerlm.serving.receipts import MAX_LISTED

        before = None
        while True:
            page = self.receipts(account=account, model=model, state=state, limit=MAX_LISTED, before=before)
            yield from page
            if len(page) < MAX_LISTED:
                return
            before = page[-1]["id"]

    def receipt(self, receipt_id: str, consumer: LocalAccount | None = None) -> dict:
        """The receipt, the node's checks, and this client's own: split recomputed, signer recovered. With
        `consumer` (the receipt's own), its full copy: the prompt and answer too, so the request hash is checked."""
        from ledgerlm.serving.receipts import Receipt, verify_receipt

        if consumer is None:
            shown = self.node._request("GET", f"/receipts/{receipt_id}")
        else:
            from ledgerlm.identity import READ_HEADER

            shown = self.node._request("GET", f"/receipts/{receipt_id}/full",
                                       headers={READ_HEADER: self.node.read_header(consumer)})
        local = verify_receipt(Receipt(**shown["receipt"]), domain=self.node.domain)
        local["signed_by_this_node"] = local["signer"] == self.node.info()["node_address"]
        return {**shown, "checks": local}


class SharesActions:
    """Revenue shares: issue (signed by the owner), read holders and earnings, claim and transfer (signed
    transactions from the holder's own key, relayed by the node)."""

    def __init__(self, node: NodeClient):
        self.node = node

    def preview(self, kind: str, asset: str, *, supply: int, version: int = 0,
                account: LocalAccount | None = None) -> dict:
        """The allocation an issue of `supply` base units would make, its root and the factory's signing domain
        (a private Datanet's read as `account`, its owner or a member)."""
        headers = {}
        if kind == "datanet" and account is not None:
            from ledgerlm.identity import READ_HEADER

            headers[READ_HEADER] = self.node.read_header(account, datanet=asset)
        return self.node._request("GET", f"/shares/allocation/{kind}/{asset}", headers=headers,
                                  params={"supply": str(int(supply)), "version": version})

    def issue(self, account: LocalAccount, kind: str, asset: str, *, supply: int, version: int = 0) -> dict:
        """Preview the allocation, check that its leaves make up the supply under the root the node names, then
        sign that root twice: IssueShares for the node and the factory's ShareIssue for the chain."""
        from ledgerlm.chain.shares import AssetKind, sign_share_issue

        shown = self.preview(kind, asset, supply=supply, version=version, account=account)
        root = _checked_allocation(shown, int(supply))
        private = kind == "datanet" and self.node._request(
            "GET", f"/datanets/{asset}", reader=account)["visibility"] == "private"
        _checked_token_names(shown, private)
        action = self.node._sign(account, "IssueShares", {
            "kind": kind, "asset": asset, "version": version, "supply": int(supply),
            "ownerBps": int(shown["owner_bps"]), "allocationRoot": root})
        signature = sign_share_issue(account, shown["share_issue_domain"], AssetKind[kind.upper()], shown["asset_id"],
                                     int(supply), root, action["message"]["deadline"], name=shown["name"],
                                     symbol=shown["symbol"])
        return self.node._request("POST", "/shares", json={"action": action, "share_issue_signature": signature})

    def list(self) -> list[dict]:
        return self.node._request("GET", "/shares")

    def show(self, ref: str) -> dict:
        return self.node._request("GET", f"/shares/{ref}")

    def holders(self, ref: str, block: int | None = None) -> dict:
        return self.node._request("GET", f"/shares/{ref}/holders", params={"block": block} if block is not None else None)

    def claim(self, account: LocalAccount, ref: str) -> dict | None:
        """Claim the account's allocation (None when it has none or claimed it already)."""
        asset = self.show(ref)
        leaf = next((x for x in asset["allocation"] if x["account"] == account.address), None)
        holders = self.holders(ref)["holders"]
        mine = next((h for h in holders if h["account"] == account.address), None)
        if leaf is None or mine is None or int(mine["unclaimed_allocation"]) == 0:
            return None
        return self.node.chain.send_to(account, asset["token"], "RevenueShare", "claimAllocation",
                                       [account.address, int(leaf["amount"]), leaf["proof"]])

    def transfer(self, account: LocalAccount, ref: str, to: str, amount: int) -> dict:
        """Send shares (claiming the sender's allocation first if it is still unclaimed)."""
        claimed = self.claim(account, ref)
        tx = self.node.chain.send_to(account, self.show(ref)["token"], "RevenueShare", "transfer", [to, int(amount)])
        return {**tx, "claimed": claimed["tx_hash"] if claimed else None}


class AgentActions:
    """Agent policies as the node enforces them: the owner signs them, the agent binds itself once."""

    def __init__(self, node: NodeClient):
        self.node = node

    def set_policy(self, owner: LocalAccount, agent: str, policy: dict, *, bind: LocalAccount | None = None) -> dict:
        """Register or replace `agent`'s policy (SetAgentPolicy fields); `bind` is the agent's own key, needed
        the first time so the agent accepts this owner."""
        body = {"action": self.node._sign(owner, "SetAgentPolicy", {"agent": agent, **policy})}
        if bind is not None:
            body["binding"] = self.node._sign(bind, "BindAgent", {"owner": owner.address})
        return self.node._request("PUT", f"/agents/{agent}/policy", json=body)

    def set_paused(self, owner: LocalAccount, agent: str, paused: bool) -> dict:
        action = self.node._sign(owner, "PauseAgent", {"agent": agent, "paused": bool(paused)})
        return self.node._request("POST", f"/agents/{agent}/pause", json={"action": action})

    def standing(self, agent: str, reader: LocalAccount | None = None) -> dict:
        """The agent's standing; the private Datanets its policy allows are named to `reader` (signing the read)
        when it is the agent, its owner, or may read them."""
        return self.node._request("GET", f"/agents/{agent}", reader=reader)

    def list(self, owner: str | None = None) -> list[dict]:
        return self.node._request("GET", "/agents", params={"owner": owner} if owner else None)


class ProviderActions:
    """Compute providers: offers, jobs paid from escrow, and signed reports the node spot-checks."""

    def __init__(self, node: NodeClient):
        self.node = node

    def offer(self, account: LocalAccount, *, kind: str, hardware: str, base_model: str, price: int) -> dict:
        action = self.node._sign(account, "OfferCompute", {"kind": kind, "hardware": hardware,
                                                           "baseModel": base_model, "price": int(price)})
        return self.node._request("POST", "/providers/offers", json={"action": action})

    def withdraw(self, account: LocalAccount, offer_id: int) -> dict:
        action = self.node._sign(account, "WithdrawOffer", {"offerId": int(offer_id)})
        return self.node._request("POST", f"/providers/offers/{offer_id}/withdraw", json={"action": action})

    def offers(self, *, kind: str | None = None, provider: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("kind", kind), ("provider", provider)) if v}
        return self.node._request("GET", "/providers/offers", params=params or None)

    def submit(self, account: LocalAccount, *, kind: str, spec: dict, amount: int, offer_id: int = 0,
               base_model: str = "", sign_cap: bool = False) -> dict:
        """Accept an offer (0: the cheapest that fits `amount`, on `base_model` when given: "" takes any) for one
        job; its price is debited from escrow under the standing spending cap the account gives this node
        (`sign_cap`: raise it to leave `amount` if it has less left)."""
        from ledgerlm.factory.digest import canonical_json_sha256
        from ledgerlm.providers import parse_spec

        spec = parse_spec(kind, spec).model_dump()
        if sign_cap:
            self.node.ensure_spending_cap(account, int(amount))
        action = self.node._sign(account, "AcceptOffer", {"offerId": int(offer_id), "amount": int(amount),
                                                          "specHash": "0x" + canonical_json_sha256(spec),
                                                          "baseModel": base_model})
        return self.node._request("POST", "/providers/jobs", json={"action": action, "kind": kind, "spec": spec})

    def jobs(self, *, provider: str | None = None, requester: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("provider", provider), ("requester", requester)) if v}
        return self.node._request("GET", "/providers/jobs", params=params or None)

    def job(self, job_id: int) -> dict:
        return self.node._request("GET", f"/providers/jobs/{job_id}")

    def report(self, account: LocalAccount, job_id: int, result: dict, files: dict[str, bytes]) -> dict:
        """Sign and send a job's result with its files; the node answers after its spot-check."""
        import base64

        from ledgerlm.factory.digest import canonical_json_sha256

        action = self.node._sign(account, "ReportJob", {"jobId": int(job_id),
                                                        "resultHash": "0x" + canonical_json_sha256(result)})
        body = {"action": action, "result": result,
                "files": {sha: base64.b64encode(data).decode() for sha, data in files.items()}}
        return self.node._request("POST", f"/providers/jobs/{job_id}/report", json=body)


class ChainActions:
    """Chain writes signed by the user's own key and relayed by the node (`NodeClient.chain`)."""

    def __init__(self, node: NodeClient):
        self.node = node

    def info(self) -> dict:
        return self.node._request("GET", "/chain/info")

    def account(self, address: str) -> dict:
        return self.node._request("GET", f"/chain/accounts/{address}")

    def index_status(self) -> dict:
        return self.node._request("GET", "/chain/index")

    def index(self, max_blocks: int = 1000) -> dict:
        """Index up to `max_blocks` more blocks (operator credential)."""
        return self.node._request("POST", "/chain/index", json={"max_blocks": max_blocks})

    def faucet(self, address: str, *, eth_wei: int = 0, tokens: int = 0) -> dict:
        return self.node._request("POST", "/chain/faucet", json={"address": address, "eth_wei": eth_wei, "tokens": tokens})

    def _address(self, contract: str) -> str:
        # /node/info carries the addresses and is fetched once per client; /chain/info reads the chain.
        contracts = self.node.info().get("contracts")
        if not contracts:
            raise LedgerError("the node has no contracts deployed", field="chain", status=409)
        return contracts[contract]

    def send(self, account: LocalAccount, contract: str, function: str, args: list, *, value: int = 0) -> dict:
        """Encode a call with the contract's ABI, let the node estimate it (a revert stops here,
        before signing), sign it locally, and have the node relay it."""
        return self.send_to(account, self._address(contract), contract, function, args, value=value)

    def send_to(self, account: LocalAccount, to: str, artifact: str, function: str, args: list, *,
                value: int = 0) -> dict:
        """`send` to a contract at `to` (e.g. a share token) whose ABI is the artifact's."""
        from web3 import Web3

        from ledgerlm.chain import load_artifact

        data = Web3().eth.contract(abi=load_artifact(artifact).abi).encode_abi(function, args=args)
        return self._relay(account, to, data, value)

    def send_eth(self, account: LocalAccount, to: str, wei: int) -> dict:
        """Pay `wei` of the chain's native coin (gas money) from the user's own key."""
        return self._relay(account, to, "0x", int(wei))

    def _relay(self, account: LocalAccount, to: str, data: str, value: int) -> dict:
        quote = self.node._request(
            "POST", "/chain/estimate", json={"from": account.address, "to": to, "data": data, "value": value}
        )
        tx = {"to": to, "data": data, "value": value, "gas": quote["gas"], "nonce": quote["nonce"],
              "chainId": quote["chain_id"], **quote["fees"]}
        raw = account.sign_transaction(tx).raw_transaction
        return self.node._request("POST", "/chain/transactions", json={"raw": "0x" + bytes(raw).hex()})

    def approve(self, account: LocalAccount, spender_contract: str, amount: int) -> dict | None:
        spender = self._address(spender_contract)
        return self.send(account, "LedgerToken", "approve", [spender, amount])

    def stake(self, account: LocalAccount, role: str, amount: int) -> list[dict]:
        role_id = _role(role)
        return [self.approve(account, "Staking", amount), self.send(account, "Staking", "stake", [role_id, amount])]

    def request_unstake(self, account: LocalAccount, role: str, amount: int) -> dict:
        return self.send(account, "Staking", "requestUnstake", [_role(role), amount])

    def withdraw_stake(self, account: LocalAccount, role: str) -> dict:
        return self.send(account, "Staking", "withdraw", [_role(role)])

    def transfer(self, account: LocalAccount, to: str, amount: int) -> dict:
        return self.send(account, "LedgerToken", "transfer", [to, amount])


def _role(role: str) -> int:
    from ledgerlm.chain import StakeRole

    names = {r.name.lower(): int(r) for r in StakeRole}
    if role not in names:
        raise LedgerError(f"unknown stake role {role!r}: use {', '.join(names)}", field="role")
    return names[role]


def _checked_allocation(preview: dict, supply: int) -> str:
    """The root of an allocation the node previewed, once its leaves give out exactly `supply` (a model's all to
    its developer, a Datanet's owner at least the share its policy names) and hash to that root: what the owner
    signs is then the allocation shown, not only a root the node names."""
    from ledgerlm.chain.merkle import StandardMerkleTree

    leaves = [[x["account"], int(x["amount"])] for x in preview["allocation"]]
    given = {account: amount for account, amount in leaves}
    owed = supply if preview["kind"] == "model" else supply * int(preview["owner_bps"]) // 10_000
    if sum(given.values()) != supply or len(given) != len(leaves) or given.get(preview["owner"], 0) < owed:
        raise LedgerError(f"the node's allocation of {preview['kind']} {preview['asset']} does not give out the supply "
                          f"{supply} with {preview['owner']}'s part: nothing was signed", field="allocation")
    root = StandardMerkleTree.of(leaves, ["address", "uint256"]).root
    if root != preview["allocation_root"].lower():
        raise LedgerError(f"the node's allocation root {preview['allocation_root']} is not the root of the leaves it "
                          "shows: nothing was signed", field="allocationRoot")
    return root


def _checked_token_names(preview: dict, private: bool) -> None:
    """The token's name and symbol are signed too: they must be the ones the asset's kind, name and visibility give
    (`share_token_names`), so a node may name the asset's one token neither after another token nor, for a private
    Datanet, after its name, which the chain otherwise holds only hashed."""
    from ledgerlm.economy.shares import asset_chain_id, share_token_names

    expected = share_token_names(preview["kind"], preview["asset"], asset_chain_id(preview["kind"], preview["asset"]),
                                 private=private)
    if (preview.get("name"), preview.get("symbol")) != expected:
        raise LedgerError(f"the node names the share token {preview.get('name')!r} ({preview.get('symbol')!r}), not "
                          f"{expected[0]!r} ({expected[1]!r}): nothing was signed", field="name")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
