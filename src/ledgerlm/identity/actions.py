"""EIP-712 typed messages for every state-changing action, and their verification."""

from __future__ import annotations

import secrets
import time
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel

from ledgerlm.errors import AuthError, LedgerError
from ledgerlm.identity.domain import SigningDomain
from ledgerlm.times import duration, format_time

DEFAULT_TTL = 3600

# The first field of every action is the actor who must have signed it.
ACTIONS: dict[str, list[tuple[str, str]]] = {
    "CreateDatanet": [
        ("owner", "address"),
        ("name", "string"),
        ("specHash", "bytes32"),
        ("nonce", "uint256"),
        ("deadline", "uint256"),
    ],
    "Contribute": [
        ("contributor", "address"),
        ("datanet", "string"),
        ("manifestHash", "bytes32"),
        ("nonce", "uint256"),
        ("deadline", "uint256"),
    ],
    "WithdrawContribution": [
        ("contributor", "address"),
        ("contributionId", "uint256"),
        ("nonce", "uint256"),
        ("deadline", "uint256"),
    ],
    "ReviewContribution": [
        ("owner", "address"),
        ("contributionId", "uint256"),
        ("accept", "bool"),
        ("reason", "string"),
        ("nonce", "uint256"),
        ("deadline", "uint256"),
    ],
    # one signature for a whole batch: the ids are listed, so nothing uploaded after signing is included
    "ReviewContributions": [
        ("owner", "address"),
        ("datanet", "string"),
        ("contributionIds", "uint256[]"),
        ("accept", "bool"),
        ("reason", "string"),
        ("nonce", "uint256"),
        ("deadline", "uint256"),
    ],
    # private Datanets: the owner adds and removes members
    "AddMember": [("owner", "address"), ("datanet", "string"), ("member", "address"),
                  ("nonce", "uint256"), ("deadline", "uint256")],
    "RemoveMember": [("owner", "address"), ("datanet", "string"), ("member", "address"),
                     ("nonce", "uint256"), ("deadline", "uint256")],
    # a short-lived read credential for one node (its key), sent in a header and never recorded ("*": any Datanet)
    "ReadRequest": [("reader", "address"), ("node", "address"), ("datanet", "string"), ("expiry", "uint256")],
    "PublishVersion": [
        ("owner", "address"),
        ("datanet", "string"),
        ("nonce", "uint256"),
        ("deadline", "uint256"),
    ],
    # validation
    # the owner's share (basis points) of the Datanet's revenue shares, named in its policy before they are issued
    "SetOwnerShare": [("owner", "address"), ("datanet", "string"), ("ownerBps", "uint256"), ("nonce", "uint256"),
                      ("deadline", "uint256")],
    "SetGatePolicy": [("owner", "address"), ("datanet", "string"), ("policyHash", "bytes32"),
                      ("nonce", "uint256"), ("deadline", "uint256")],
    "OpenRound": [("owner", "address"), ("datanet", "string"), ("nonce", "uint256"), ("deadline", "uint256")],
    "CommitVotes": [("validator", "address"), ("roundId", "uint256"), ("commit", "bytes32"),
                    ("nonce", "uint256"), ("deadline", "uint256")],
    "RevealVotes": [("validator", "address"), ("roundId", "uint256"), ("commit", "bytes32"),
                    ("nonce", "uint256"), ("deadline", "uint256")],
    "TallyRound": [("caller", "address"), ("roundId", "uint256"), ("nonce", "uint256"), ("deadline", "uint256")],
    # factory
    "TrainModel": [("developer", "address"), ("modelId", "string"), ("datanet", "string"),
                   ("version", "uint256"), ("configHash", "bytes32"), ("nonce", "uint256"), ("deadline", "uint256")],
    "ControlJob": [("developer", "address"), ("jobId", "uint256"), ("command", "string"),
                   ("nonce", "uint256"), ("deadline", "uint256")],
    "PublishModel": [("developer", "address"), ("modelId", "string"), ("adapterHash", "bytes32"),
                     ("nodeBps", "uint256"), ("developerBps", "uint256"), ("contributorsBps", "uint256"),
                     ("validatorsBps", "uint256"), ("pricePer1k", "uint256"), ("nonce", "uint256"),
                     ("deadline", "uint256")],
    # economy: a developer changes a published model's fee split; it prices calls from the next epoch
    "SetFeePolicy": [("developer", "address"), ("modelId", "string"), ("nodeBps", "uint256"),
                     ("developerBps", "uint256"), ("contributorsBps", "uint256"), ("validatorsBps", "uint256"),
                     ("nonce", "uint256"), ("deadline", "uint256")],
    # attribution: compute on the node, so a caller signs for it (or holds the operator credential)
    "RequestAttribution": [("caller", "address"), ("model", "string"), ("requestHash", "bytes32"),
                           ("nonce", "uint256"), ("deadline", "uint256")],
    # serving: a consumer binds a new API key (by its sha256) to the standing escrow spending cap they signed
    # beside it (the same cap, capNonce and capDeadline as that PaymentEscrow SpendingCap)
    "CreateApiKey": [("consumer", "address"), ("keyHash", "bytes32"), ("cap", "uint256"), ("capNonce", "uint256"),
                     ("capDeadline", "uint256"), ("nonce", "uint256"), ("deadline", "uint256")],
    "RevokeApiKey": [("consumer", "address"), ("keyId", "uint256"), ("nonce", "uint256"), ("deadline", "uint256")],
    # revenue shares: the Datanet's owner or the model's developer issues them once (version 0: the latest), on the
    # allocation root the node previewed for these terms; the factory's ShareIssue, signed beside it, carries the
    # same kind, asset, supply, root and deadline to the chain
    "IssueShares": [("owner", "address"), ("kind", "string"), ("asset", "string"), ("version", "uint256"),
                    ("supply", "uint256"), ("ownerBps", "uint256"), ("allocationRoot", "bytes32"),
                    ("nonce", "uint256"), ("deadline", "uint256")],
    # paid access to a private Datanet: the owner's price per version (0: every version), and a developer's
    # payment of at most `amount` from escrow for a licence to "train" on (modelId: the model) or "export"
    # (modelId empty) one version
    "SetAccessPrice": [("owner", "address"), ("datanet", "string"), ("version", "uint256"), ("price", "uint256"),
                       ("nonce", "uint256"), ("deadline", "uint256")],
    "PayAccess": [("developer", "address"), ("datanet", "string"), ("version", "uint256"), ("amount", "uint256"),
                  ("modelId", "string"), ("purpose", "string"), ("nonce", "uint256"), ("deadline", "uint256")],
    # economy: an account asks the node to relay its claim of one epoch's payout (the node pays the gas)
    "ClaimPayout": [("account", "address"), ("epoch", "uint256"), ("nonce", "uint256"), ("deadline", "uint256")],
    # agents: the agent's key accepts its owner once; from then on only the owner sets its policy
    "BindAgent": [("agent", "address"), ("owner", "address"), ("nonce", "uint256"), ("deadline", "uint256")],
    "SetAgentPolicy": [("owner", "address"), ("agent", "address"), ("budget", "uint256"), ("perEpoch", "bool"),
                       ("allowModels", "string[]"), ("allowDatanets", "string[]"), ("priceCapped", "bool"),
                       ("maxPricePer1k", "uint256"), ("actions", "string[]"), ("paused", "bool"),
                       ("nonce", "uint256"), ("deadline", "uint256")],
    "PauseAgent": [("owner", "address"), ("agent", "address"), ("paused", "bool"), ("nonce", "uint256"),
                   ("deadline", "uint256")],
    # compute providers: a provider offers hardware for "train" or "serve" jobs at a price per job; a requester
    # accepts an offer for one job (specHash: sha256 of the job spec's canonical JSON), paying at most `amount`
    # from escrow; the provider reports the job's result (resultHash: sha256 of the result's canonical JSON)
    "OfferCompute": [("provider", "address"), ("kind", "string"), ("hardware", "string"), ("baseModel", "string"),
                     ("price", "uint256"), ("nonce", "uint256"), ("deadline", "uint256")],
    "WithdrawOffer": [("provider", "address"), ("offerId", "uint256"), ("nonce", "uint256"), ("deadline", "uint256")],
    "AcceptOffer": [("requester", "address"), ("offerId", "uint256"), ("specHash", "bytes32"), ("amount", "uint256"),
                    ("baseModel", "string"), ("nonce", "uint256"), ("deadline", "uint256")],
    "ReportJob": [("provider", "address"), ("jobId", "uint256"), ("resultHash", "bytes32"), ("nonce", "uint256"),
                  ("deadline", "uint256")],
    # signed by the node, not by users: its receipt for one completion (hashes cover the stored JSON)
    "InferenceReceipt": [("node", "address"), ("receiptId", "string"), ("epoch", "uint256"),
                         ("consumer", "address"), ("modelId", "string"), ("adapterHash", "bytes32"),
                         ("promptTokens", "uint256"), ("completionTokens", "uint256"), ("pricePer1k", "uint256"),
                         ("fee", "uint256"), ("feePolicyHash", "bytes32"), ("payoutsHash", "bytes32"),
                         ("datanetRootsHash", "bytes32"), ("attributionHash", "bytes32"),
                         ("requestHash", "bytes32"), ("state", "string"), ("createdAt", "uint256")],
    # signed by the node, not by users: its receipt for a stored upload
    "ContributionReceipt": [("node", "address"), ("uploadId", "uint256"), ("contributor", "address"),
                            ("datanet", "string"), ("manifestHash", "bytes32"),
                            ("firstContributionId", "uint256"), ("contributionCount", "uint256"),
                            ("timestamp", "uint256")],
}


class SignedAction(BaseModel):
    """What a client sends: the action's name, its message fields and the actor's signature."""

    action: str
    message: dict[str, Any]
    signature: str

    @property
    def actor(self) -> str:
        return self.message[ACTIONS[self.action][0][0]]


def typed_data(action: str, message: dict[str, Any], domain: SigningDomain) -> dict[str, Any]:
    if action not in ACTIONS:
        raise AuthError(f"unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}", field="action")
    domain_fields, domain_values = domain.eip712()
    return {
        "types": {
            "EIP712Domain": domain_fields,
            action: [{"name": n, "type": t} for n, t in ACTIONS[action]],
        },
        "primaryType": action,
        "domain": domain_values,
        "message": message,
    }


def new_nonce() -> int:
    return secrets.randbits(63)


def action_message(
    action: str, actor: str, fields: dict[str, Any], *, ttl: int = DEFAULT_TTL, nonce: int | None = None,
    deadline: int | None = None,
) -> dict[str, Any]:
    """The message an actor signs: actor first, then the action's fields, a fresh nonce and a deadline."""
    if action not in ACTIONS:
        raise AuthError(f"unknown action {action!r}; known: {', '.join(sorted(ACTIONS))}", field="action")
    return {
        ACTIONS[action][0][0]: actor,
        **fields,
        "nonce": new_nonce() if nonce is None else nonce,
        "deadline": int(time.time()) + ttl if deadline is None else deadline,
    }


def sign_action(
    account: LocalAccount,
    action: str,
    fields: dict[str, Any],
    *,
    domain: SigningDomain,
    ttl: int = DEFAULT_TTL,
    nonce: int | None = None,
    deadline: int | None = None,
) -> SignedAction:
    """Fill in actor, nonce and deadline, then sign: the client side of every action."""
    message = action_message(action, account.address, fields, ttl=ttl, nonce=nonce, deadline=deadline)
    for name, kind in ACTIONS[action]:  # a value the type cannot hold (an id of 81 digits, -1) is the caller's error
        if name in message:
            try:
                check_field(action, name, kind, message[name])
            except AuthError as exc:
                raise LedgerError(exc.message, field=exc.field) from None
    signed = account.sign_message(encode_typed_data(full_message=typed_data(action, message, domain)))
    return SignedAction(action=action, message=message, signature="0x" + signed.signature.hex().removeprefix("0x"))


def verify_action(signed: SignedAction, *, expected: str, domain: SigningDomain, now: int | None = None) -> str:
    """Check shape, deadline (not past, not beyond the domain's cap) and signature; returns the signer.

    Replays are rejected by the store's unique (signer, nonce) constraint when the action is
    recorded, in the same transaction as its effect.
    """
    if signed.action != expected:
        raise AuthError(f"expected a signed {expected} action, got {signed.action!r}", field="action")
    fields = ACTIONS[expected]
    names = [n for n, _ in fields]
    missing = [n for n in names if n not in signed.message]
    extra = [n for n in signed.message if n not in names]
    if missing or extra:
        raise AuthError(
            f"{expected} message fields are wrong: missing {missing or 'none'}, unexpected {extra or 'none'}",
            field="message",
        )
    for name, kind in fields:
        check_field(expected, name, kind, signed.message[name])
    now = int(time.time()) if now is None else now
    check_deadline(expected, int(signed.message["deadline"]), domain, now)
    signer = recover_signer(typed_data(expected, signed.message, domain), signed.signature, what=expected)
    actor = to_checksum_address(signed.message[names[0]])
    if signer != actor:
        # A message signed for another chain or another deployment recovers some other address.
        raise AuthError(
            f"{expected} signature does not match {names[0]} {actor} for this node ({domain.describe()});"
            " sign with the domain from /node/info",
            field="signature",
        )
    return signer


def recover_signer(typed: dict, signature: str | bytes, *, what: str, field: str = "signature",
                   error: type[LedgerError] = AuthError) -> str:
    """The address that signed the EIP-712 `typed` data. Every signature a request carries is recovered here, so
    one that cannot be (not hex, not 65 bytes, r or s out of range) is refused alike everywhere: a 401 naming
    `field`, never the server error eth-keys' own exceptions would become."""
    try:
        return Account.recover_message(encode_typed_data(full_message=typed), signature=signature)
    except Exception as exc:  # malformed signatures raise a variety of errors
        raise error(f"{what} signature is malformed: {exc}", field=field, status=401) from exc


def check_deadline(what: str, deadline: int, domain: SigningDomain, now: int) -> None:
    """A deadline must not have passed and must not lie further ahead than the domain allows."""
    if deadline < now:
        raise AuthError(f"{what} signature expired at {format_time(deadline, now)}", field="deadline")
    if deadline > now + domain.max_ttl:
        raise AuthError(
            f"{what} deadline is {duration(deadline - now)} ahead ({deadline - now} s); this node accepts"
            f" at most {domain.max_ttl} s",
            field="deadline",
        )


def check_field(action: str, name: str, kind: str, value: Any) -> None:
    ok = True
    if kind.endswith("[]"):
        if not isinstance(value, list):
            raise AuthError(f"{action}.{name} must be a list of {kind[:-2]}, got {value!r}", field=name)
        for item in value:
            check_field(action, name, kind[:-2], item)
        return
    if kind == "address":
        ok = isinstance(value, str) and is_address(value)
    elif kind.startswith("uint"):
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**256
    elif kind == "bytes32":
        ok = isinstance(value, str) and value.startswith("0x") and len(value) == 66
        if ok:
            try:
                bytes.fromhex(value[2:])
            except ValueError:
                ok = False
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    if not ok:
        raise AuthError(f"{action}.{name} must be a valid {kind}, got {value!r}", field=name)


class IdentityError(LedgerError):
    pass
