"""What the gates see and say: a pending contribution as a candidate, a finding, and the report per contribution."""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ledgerlm.datanets.schemas import LABEL_FIELD_ANNOTATION

SEVERITIES = ("reject", "flag")
DECISIONS = ("pass", "flag", "reject")
# fields whose text a model learns to say; instructions planted there steer answers
ANSWER_FIELDS = frozenset({"answer", "output", "response", "completion", "assistant", "target", "chosen"})
# fields that ask what the answer fields answer (alpaca's `input` is part of the question)
QUESTION_FIELDS = frozenset({"question", "instruction", "prompt", "input", "query", "user"})


@dataclass(frozen=True, init=False)
class Candidate:
    """One pending contribution as the gates see it.

    `text` is the record's canonical text or the document's text; when `record` is given the
    gates read its field values instead, so JSON punctuation never looks like junk, and each key
    that is no plain field name (`_PLAIN_KEY`: a schema that allows extra fields lets a key carry
    an address or an order, exported as it was written). A document's file `name` is read with it.
    """

    contribution_id: int
    contributor: str
    content_hash: str
    text: str
    record: dict | None = None
    label_field: str | None = None

    # each text, and the label, is read by several gates: all are cut from the record when the
    # candidate is made (a candidate is made per gate run, and its record is not changed while
    # the gates read it); which field plays which part is worked out once per set of field
    # names, and the attributes are set in one update of a frozen instance's dict
    def __init__(self, contribution_id: int, contributor: str, content_hash: str, text: str,
                 record: dict | None = None, label_field: str | None = None, name: str | None = None) -> None:
        if record is None:
            texts = {"_label": None, "_scan_text": text if not name else f"{name}\n{text}", "_feature_text": text,
                     "_answer_text": "", "_question_text": "", "_answer_parts": ()}
        else:
            nested: list = []  # the values that are no text, whose keys are read too
            values = [value if type(value) is str else _flattened(value, nested) for value in record.values()]
            parts = _parts(tuple(record), label_field)
            scan = "\n".join(values)
            unusual = [*parts.unusual, *unusual_keys(nested)] if nested else parts.unusual
            if unusual:
                scan = "\n".join([scan, *unusual])
            label = record.get(label_field) if parts.labelled else None
            texts = {"_label": None if label is None else str(label), "_scan_text": scan,
                     "_feature_text": scan if parts.feature is None else parts.feature(values),
                     "_answer_text": parts.answer(values), "_question_text": parts.question(values),
                     "_answer_parts": parts.answer_parts(values)}
        self.__dict__.update(texts, contribution_id=contribution_id, contributor=contributor,
                             content_hash=content_hash, text=text, record=record, label_field=label_field)

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


class _Parts(NamedTuple):
    """How a record with given field names makes each text the gates read, from its field texts in order."""

    labelled: bool
    feature: Callable | None  # None: every field (the record has no label field)
    answer: Callable
    question: Callable
    answer_parts: Callable
    unusual: tuple[str, ...]  # the names that are no plain field name (`_PLAIN_KEY`)


@functools.lru_cache(maxsize=256)
def _parts(names: tuple, label_field: str | None) -> _Parts:
    labelled = label_field is not None and label_field in names
    lowered = [name.lower() if type(name) is str else str(name).lower() for name in names]
    answer = [i for i, name in enumerate(lowered) if name in ANSWER_FIELDS]
    feature = _joined([i for i, name in enumerate(names) if name != label_field]) if labelled else None
    answer_names = tuple(names[i] for i in answer)
    pick = operator.itemgetter(*answer) if len(answer) > 1 else None
    return _Parts(labelled, feature, _joined(answer),
                  _joined([i for i, name in enumerate(lowered) if name in QUESTION_FIELDS]),
                  (lambda texts: ()) if not answer else
                  (lambda texts: ((answer_names[0], texts[answer[0]]),)) if pick is None else
                  (lambda texts: tuple(zip(answer_names, pick(texts)))),
                  tuple(k for k in names if not (type(k) is str and _PLAIN_KEY.match(k))))


def _joined(fields: list[int]) -> Callable:
    """The texts of `fields` joined by newlines, as a function of a record's field texts."""
    if not fields:
        return lambda texts: ""
    if len(fields) == 1:
        return operator.itemgetter(fields[0])
    pick = operator.itemgetter(*fields)
    return lambda texts: "\n".join(pick(texts))


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


# a key a schema names: a word or two joined by "_" or "-"; any other key is read like a value
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}\Z")


def unusual_keys(value: Any) -> list[str]:
    """The keys in `value` (parsed JSON, nested ones too) that are no plain field name."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found += [k for k in item if not _PLAIN_KEY.match(k)]
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return found


def _flattened(value: Any, into: list) -> str:
    into.append(value)
    return flatten(value)


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


# up to this many texts are searched one by one; more go through a batch's compiled passes
FEW = 64


def with_undisguised(found: list[tuple[str, float, str]], more: list[tuple[str, float, str]],
                     how: str = "once hidden and look-alike characters are undone") -> list[tuple[str, float, str]]:
    """A text's findings, and those of its undisguised text (`code_points.undisguised`, or another reading `how`
    names) whose code the text as written did not already give."""
    codes = {code for code, _, _ in found}
    return found + [(code, score, f"{how}, {detail}") for code, score, detail in more if code not in codes]


def decide(findings: Iterable[Finding]) -> str:
    severities = {f.severity for f in findings}
    if "reject" in severities:
        return "reject"
    return "flag" if "flag" in severities else "pass"
