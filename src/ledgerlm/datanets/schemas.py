"""Datanet domain types: specs, Datanets, contributions, uploads, versions."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, field_validator

from ledgerlm.errors import ConflictError, LedgerError, NotFoundError
from ledgerlm.money import BPS

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}[a-z0-9]\Z")
STATES = ("pending", "accepted", "rejected", "withdrawn")
DOCUMENTS = "documents"
# the JSON Schema annotation with which an owner names the field that holds a record's label
LABEL_FIELD_ANNOTATION = "x-label-field"
# what an export adds to every record (versions.iter_version): a record may not bring its own
EXPORT_FIELDS = ("_contribution_id", "_contributor", "_content_hash")


class DatanetError(LedgerError):
    pass


class UnknownDatanet(NotFoundError, DatanetError):
    pass


class DuplicateContribution(ConflictError, DatanetError):
    pass


class QuotaExceeded(DatanetError):
    """An upload that would take its contributor past the per-account storage quota."""

    status = 413


class AccessDenied(DatanetError):
    """The signer is known but may not use this (private) Datanet."""

    status = 403


# what a signed hash can hold: orjson, which the hashes are made with, writes integers of 64 bits
_JSON_INT_MIN, _JSON_INT_MAX = -(2**63), 2**64 - 1


def json_numbers_hashable(value: Any) -> Any:
    """`value` (parsed JSON) when every integer in it fits in 64 bits, else a ValueError saying so (a
    NaN is left to the checks that know the field: orjson hashes it as null)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            if not _JSON_INT_MIN <= item <= _JSON_INT_MAX:
                raise ValueError(f"holds the integer {str(item)[:24]}{'...' if len(str(item)) > 24 else ''}, "
                                 "outside the 64-bit range; write it as a string")
    return value


# What a Datanet's spec may hold: every listing of Datanets carries it, and the licence goes on chain.
MAX_DESCRIPTION_CHARS = 4_096
MAX_LICENCE_CHARS = 128
MAX_SCHEMA_BYTES = 64 * 1024


class DatanetSpec(BaseModel):
    """What a Datanet owner declares at creation; its hash is what the owner signs."""

    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    licence: str = "CC-BY-4.0"
    schema_: dict[str, Any] | Literal["documents"] = Field(default=DOCUMENTS, alias="schema")
    visibility: Literal["public", "private"] = "public"
    # basis points of the revenue shares' supply the owner keeps when they are issued
    owner_share_bps: int = Field(default=0, ge=0, le=BPS)

    model_config = {"populate_by_name": True}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(
                "must be 2-64 characters of lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        if len(value) > MAX_DESCRIPTION_CHARS:
            raise ValueError(f"must be at most {MAX_DESCRIPTION_CHARS:,} characters, not {len(value):,}")
        return value

    @field_validator("licence")
    @classmethod
    def _licence(cls, value: str) -> str:
        # the licence is written on chain at the node's expense: a short name or SPDX expression
        if not 1 <= len(value) <= MAX_LICENCE_CHARS or not value.isprintable():
            raise ValueError(f"must be 1-{MAX_LICENCE_CHARS} printable characters (an SPDX identifier or "
                             "a licence's short name)")
        return value

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value):
        value = json_numbers_hashable(value)
        if value != DOCUMENTS and len(orjson.dumps(value)) > MAX_SCHEMA_BYTES:
            raise ValueError(f"must be at most {MAX_SCHEMA_BYTES // 1024} KiB of JSON")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        if len(value) > 32 or any(not t or len(t) > 64 for t in value):
            raise ValueError("at most 32 tags of 1-64 characters")
        return value

    @property
    def kind(self) -> str:
        return DOCUMENTS if self.schema_ == DOCUMENTS else "records"

    def spec_hash(self) -> str:
        body = self.model_dump(by_alias=True)
        if not body["owner_share_bps"]:  # a Datanet without an owner share hashes as it did before there was one
            del body["owner_share_bps"]
        return "0x" + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Datanet(BaseModel):
    id: int
    name: str
    owner: str
    description: str
    tags: list[str]
    licence: str
    kind: str
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    visibility: str
    owner_share_bps: int = 0  # the owner's share of the revenue shares' supply, in basis points
    spec_hash: str
    chain_tx: str | None
    created_at: int
    counts: dict[str, int] = Field(default_factory=dict)
    versions: list[DatanetVersion] = Field(default_factory=list)

    model_config = {"populate_by_name": True}


class Contribution(BaseModel):
    id: int
    datanet: str
    upload_id: int
    contributor: str
    content_hash: str
    source: str
    state: str
    reason: str | None
    created_at: int
    updated_at: int
    payload: Any = None
    events: list[dict[str, Any]] = Field(default_factory=list)


# One signature may cover this many contributions; larger reviews are split by the client.
MAX_REVIEW_BATCH = 10_000

# One page of a Datanet's contributions is built in memory: at most this many rows, fewer with their data (a
# document's may be as large as an upload), and the data of one page stops at a budget as the page is read.
MAX_CONTRIBUTIONS_PAGE = 1_000
MAX_PAYLOAD_PAGE = 100
PAGE_PAYLOAD_BYTES = 8 * 1024 * 1024  # counted as the database's length() of the text: a character is 1-4 bytes
# Where the next page starts, sent while more rows follow; a short page may end at the budget, not the list.
NEXT_OFFSET_HEADER = "X-Ledgerlm-Next-Offset"


class ContributionPage(BaseModel):
    """One page of a Datanet's contributions; `next_offset` is where the next starts, None after the last."""

    contributions: list[Contribution]
    next_offset: int | None = None


class ReviewBatch(BaseModel):
    """The outcome of one signed review of many contributions: all moved to `state`, or none."""

    datanet: str
    state: str
    reason: str
    contribution_ids: list[int]


class FileEntry(BaseModel):
    name: str
    sha256: str
    size: int = Field(ge=0, le=2**63 - 1)


class UploadReceipt(BaseModel):
    """Node-signed proof that an upload was stored: which files, how many contributions."""

    upload_id: int
    datanet: str
    contributor: str
    manifest_hash: str
    files: list[FileEntry]
    # the upload's contributions are first_contribution_id .. first_contribution_id + contribution_count - 1
    first_contribution_id: int
    contribution_count: int
    skipped_duplicates: int = 0
    byte_count: int
    created_at: int
    node: str
    node_signature: str


class DatanetVersion(BaseModel):
    datanet: str
    number: int
    root: str
    contribution_count: int
    contributor_count: int
    manifest_hash: str
    chain_tx: str | None
    created_at: int


def manifest_hash(files: list[FileEntry]) -> str:
    """The hash a contributor signs: file names, sha256 digests and sizes in upload order."""
    rows = [[f.name, f.sha256, f.size] for f in files]
    return "0x" + hashlib.sha256(orjson.dumps(rows)).hexdigest()


Datanet.model_rebuild()
