"""What the gates see and say: a pending contribution as a candidate, a finding, and the report per contribution."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ledgerlm.datanets.schemas import LABEL_FIELD_ANNOTATION

SEVERITIES = ("reject", "flag")
DECISIONS = ("pass", "flag", "reject")
# fields whose text a model learns to say; instructions planted there steer answers
ANSWER_FIELDS = frozenset({"answer", "output", "response", "completion", "assistant", "target", "chosen"})
# fields that ask what the answer fields answer (alpaca's `input` is part of the question)
QUESTION_FIELDS = frozenset({"question", "instruction", "prompt", "input", "query", "user"})


@dataclass(frozen=True)
class Candidate:
    """One pending contribution as the gates see it.

    `text` is the record's canonical text or the document's text; when `record` is given the
    gates read its field values instead, so JSON punctuation never looks like junk.
    """

    contribution_id: int
    contributor: str
    content_hash: str
    text: str
    record: dict | None = None
    label_field: str | None = None

    # each text, and the label, is read by several gates; a candidate is built per gate run and
    # its record is not changed while the gates read it, so each is worked out once
    @property
    def label(self) -> str | None:
        return self._label

    @cached_property
    def _label(self) -> str | None:
        if self.record is None or self.label_field is None or self.label_field not in self.record:
            return None
        value = self.record[self.label_field]
        return None if value is None else str(value)

    def scan_text(self) -> str:
        """Everything a reader of the record sees, label included."""
        return self._scan_text

    def feature_text(self) -> str:
        """The record without its label, so neighbours are found by content, not by label."""
        return self._feature_text

    def answer_text(self) -> str:
        return self._answer_text

    def question_text(self) -> str:
        return self._question_text

    @cached_property
    def _scan_text(self) -> str:
        if self.record is None:
            return self.text
        return "\n".join(flatten(v) for v in self.record.values())

    @cached_property
    def _feature_text(self) -> str:
        if self.record is None:
            return self.text
        return "\n".join(flatten(v) for k, v in self.record.items() if k != self.label_field)

    @cached_property
    def _answer_text(self) -> str:
        if self.record is None:
            return ""
        return "\n".join(flatten(self.record[k]) for k in answer_fields(self.record))

    @cached_property
    def _question_text(self) -> str:
        if self.record is None:
            return ""
        return "\n".join(flatten(v) for k, v in self.record.items() if str(k).lower() in QUESTION_FIELDS)


def answer_fields(record: dict) -> list[str]:
    return [k for k in record if str(k).lower() in ANSWER_FIELDS]


def label_field(schema: dict | str | None) -> str | None:
    """The field a Datanet's records carry their label in: the schema's `x-label-field`, else a `label` property.

    A label is what a classifier learns to predict, so the label-noise gate needs to know which
    field it is; owners name it explicitly, and the common convention of a `label` property is
    taken at its word.
    """
    if not isinstance(schema, dict):
        return None
    named = schema.get(LABEL_FIELD_ANNOTATION)
    if isinstance(named, str) and named:
        return named
    properties = schema.get("properties")
    return "label" if isinstance(properties, dict) and "label" in properties else None


def flatten(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(flatten(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\n".join(flatten(v) for v in value)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Finding:
    """One named signal from one gate: `score` in [0, 1] says how strong it is."""

    gate: str
    code: str
    score: float
    severity: str
    detail: str

    def to_dict(self) -> dict:
        return {"gate": self.gate, "code": self.code, "score": round(self.score, 4),
                "severity": self.severity, "detail": self.detail}


@dataclass(frozen=True)
class GateReport:
    """The gates' verdict on one contribution: reject if any finding rejects, else flag if any flags."""

    contribution_id: int
    decision: str
    findings: tuple[Finding, ...] = ()

    @property
    def reasons(self) -> list[str]:
        return [f"{f.gate}/{f.code}: {f.detail}" for f in self.findings]

    def gates_hit(self) -> set[str]:
        return {f.gate for f in self.findings}

    def to_dict(self) -> dict:
        return {"contribution_id": self.contribution_id, "decision": self.decision,
                "findings": [f.to_dict() for f in self.findings]}


def decide(findings: Iterable[Finding]) -> str:
    severities = {f.severity for f in findings}
    if "reject" in severities:
        return "reject"
    return "flag" if "flag" in severities else "pass"
