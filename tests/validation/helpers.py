"""Builders shared by the validation tests."""

from __future__ import annotations

import hashlib
import json

from ledgerlm.validation.gates import Candidate


def candidate(cid: int, text: str | None = None, *, record: dict | None = None,
              label_field: str | None = None, contributor: str = "0xalice") -> Candidate:
    canonical = text if record is None else json.dumps(record, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return Candidate(cid, contributor, digest, canonical, record, label_field)
