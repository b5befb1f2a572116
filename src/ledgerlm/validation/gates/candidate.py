"""What the gates see and say: a pending contribution as a candidate, a finding, and the report per contribution."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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

    # each text, and the label, is read by several gates: all are cut from the record in one
    # pass over its fields when the candidate is made (a candidate is built per gate run, and its
    # record is not changed while the gates read it)
    def __post_init__(self) -> None:
        record = self.record
        if record is None:
            texts = (None, self.text, self.text, "", "", ())
        else:
            scan, feature, answer, question = [], [], [], []
            label_field = self.label_field
            for key, value in record.items():
                text = value if type(value) is str else flatten(value)
                scan.append(text)
                if key != label_field:
                    feature.append(text)
                name = key.lower() if type(key) is str else str(key).lower()
                if name in ANSWER_FIELDS:
                    answer.append((key, text))
                elif name in QUESTION_FIELDS:
                    question.append(text)
            label = record.get(label_field) if label_field is not None else None
            scan_text = "\n".join(scan)
            texts = (None if label is None else str(label), scan_text,
                     "\n".join(feature) if len(feature) < len(scan) else scan_text,
                     "\n".join(text for _, text in answer), "\n".join(question), tuple(answer))
        for name, value in zip(_TEXTS, texts):
            object.__setattr__(self, name, value)

    @property
    def label(self) -> str | None:
        return self._label

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

    def answer_parts(self) -> tuple[tuple[str, str], ...]:
        """(field, text) of each answer field, in the record's order: `answer_text` joins their texts."""
        return self._answer_parts


_TEXTS = ("_label", "_scan_text", "_feature_text", "_answer_text", "_question_text", "_answer_parts")


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
