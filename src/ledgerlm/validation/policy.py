"""The gate policy a Datanet owner configures: per gate, reject / flag / off, and its thresholds."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ledgerlm.validation.errors import GatePolicyError

ACTIONS = ("reject", "flag", "off")


def _bounded(default, lo=None, hi=None):
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass(frozen=True)
class ExactDuplicateRule:
    """Same content hash as a record already in the Datanet or earlier in the batch."""

    action: str = "reject"


@dataclass(frozen=True)
class NearDuplicateRule:
    """Estimated Jaccard of character 5-gram shingles at or above `threshold`."""

    action: str = "reject"
    threshold: float = _bounded(0.75, 0.05, 1.0)
    within_batch: bool = True
    # a pair whose word diff adds or removes more words than this (or 10% of the shorter text)
    # is a different record, as is any substituted word that is not a typo
    max_inserted_words: int = _bounded(5, 0, 10_000)


@dataclass(frozen=True)
class JunkRule:
    """Empty, too short, gibberish, encoding garbage or extreme repetition."""

    action: str = "reject"
    min_chars: int = _bounded(2, 0, 10_000)
    # share of characters that are U+FFFD, control characters or mojibake sequences
    max_garbage_ratio: float = _bounded(0.01, 0.0, 1.0)
    # share of non-space characters that are letters or digits
    min_alnum_ratio: float = _bounded(0.5, 0.0, 1.0)
    # vowels among Latin letters; English prose sits near 0.38, random letters near 0.23
    min_vowel_ratio: float = _bounded(0.2, 0.0, 1.0)
    # mean English letter-pair surprisal (bits) for texts with 40+ Latin letters; prose ~3.6,
    # names and URLs up to ~6, random letters ~7
    max_letter_pair_bits: float = _bounded(6.2, 0.0, 25.0)
    # share of Latin words that no language writes (no vowel, 6+ consonants in a row, 30+ letters)
    max_implausible_word_ratio: float = _bounded(0.35, 0.0, 1.0)
    # share of word 3-grams that repeat an earlier one
    max_repeated_ngram_ratio: float = _bounded(0.5, 0.0, 1.0)
    # zlib-compressed size / raw size, for texts of 200+ bytes
    min_compression_ratio: float = _bounded(0.2, 0.0, 1.0)


PERSONAL_DATA_KINDS = (
    "email", "phone", "credit_card", "iban", "national_id",
    "private_key_block", "hex_private_key", "aws_access_key", "api_key",
)


@dataclass(frozen=True)
class PersonalDataRule:
    """Personal data and secrets: contacts, payment numbers, identity numbers, keys and tokens."""

    action: str = "reject"
    kinds: tuple[str, ...] = PERSONAL_DATA_KINDS


@dataclass(frozen=True)
class InjectionRule:
    """Prompt-injection and poisoning patterns; findings scoring below `min_score` are dropped."""

    action: str = "reject"
    min_score: float = _bounded(0.5, 0.0, 1.0)
    # rare-token backdoor triggers used in the literature (Kurita et al., 2020, "Weight Poisoning
    # Attacks on Pre-trained Models"); a Datanet whose domain uses one of them can drop it here
    trigger_tokens: tuple[str, ...] = ("cf", "mn", "bb", "tq")


@dataclass(frozen=True)
class LabelNoiseRule:
    """The label's k nearest labelled records in embedding space lean to another label.

    `min_margin`: by how much the other label's share of the neighbours' similarity must exceed
    the record's own label's share; `min_disagreement`: the least share of the k neighbours, by
    count, that carry another label.
    """

    action: str = "flag"
    k: int = _bounded(20, 1, 200)
    min_disagreement: float = _bounded(0.9, 0.0, 1.0)
    min_margin: float = _bounded(0.3, 0.0, 1.0)
    min_records: int = _bounded(20, 2, 1_000_000)
    embedder: str = "hashed"


@dataclass(frozen=True)
class QaConsistencyRule:
    """The answer does not fit its question, judged against the Datanet's own question–answer pairs."""

    action: str = "flag"
    # the record's own similarity must reach this quantile of mismatched-pair similarities
    null_quantile: float = _bounded(0.1, 0.0, 1.0)
    # another record's question may fit the answer better by less than this many standard
    # deviations of the Datanet's own question–answer similarities (embedder-independent)
    margin_sd: float = _bounded(1.7, 0.0, 20.0)
    min_records: int = _bounded(20, 3, 1_000_000)
    embedder: str = "hashed"


_RULES: dict[str, type] = {
    "exact_duplicate": ExactDuplicateRule,
    "near_duplicate": NearDuplicateRule,
    "junk": JunkRule,
    "personal_data": PersonalDataRule,
    "injection": InjectionRule,
    "label_noise": LabelNoiseRule,
    "qa_consistency": QaConsistencyRule,
}
GATES: tuple[str, ...] = tuple(_RULES)


@dataclass(frozen=True)
class GatePolicy:
    """Which gates reject, which only flag, which are off, and their thresholds; JSON round-trips."""

    exact_duplicate: ExactDuplicateRule = ExactDuplicateRule()
    near_duplicate: NearDuplicateRule = NearDuplicateRule()
    junk: JunkRule = JunkRule()
    personal_data: PersonalDataRule = PersonalDataRule()
    injection: InjectionRule = InjectionRule()
    label_noise: LabelNoiseRule = LabelNoiseRule()
    qa_consistency: QaConsistencyRule = QaConsistencyRule()

    def rule(self, gate: str):
        return getattr(self, gate)

    def action(self, gate: str) -> str:
        return self.rule(gate).action

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = {}
        for gate in GATES:
            d = asdict(self.rule(gate))
            out[gate] = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return {"gates": out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GatePolicy:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GatePolicyError(f"gate policy is not valid JSON: {exc.msg} at position {exc.pos}",
                                  field="policy") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> GatePolicy:
        """Build a policy from `{"gates": {gate: {field: value}}}`; unnamed gates and fields keep defaults."""
        if not isinstance(data, dict):
            raise GatePolicyError("gate policy must be an object like {\"gates\": {...}}", field="policy")
        unknown_top = set(data) - {"gates"}
        if unknown_top:
            key = min(unknown_top)
            raise GatePolicyError(f"unknown key {key!r} in gate policy; only 'gates' is allowed",
                                  field=key)
        gates = data.get("gates", {})
        if not isinstance(gates, dict):
            raise GatePolicyError("'gates' must be an object mapping gate names to settings", field="gates")
        rules = {}
        for gate, settings in gates.items():
            if gate not in _RULES:
                raise GatePolicyError(f"unknown gate {gate!r}; known gates: {', '.join(GATES)}",
                                      field=f"gates.{gate}")
            rules[gate] = _parse_rule(gate, _RULES[gate], settings)
        return cls(**rules)


def _parse_rule(gate: str, rule_type: type, settings: Any):
    where = f"gates.{gate}"
    if isinstance(settings, str):
        settings = {"action": settings}
    if not isinstance(settings, dict):
        raise GatePolicyError(f"{where} must be an action string or an object of settings", field=where)
    known = {f.name: f for f in fields(rule_type)}
    values = {}
    for name, value in settings.items():
        path = f"{where}.{name}"
        if name not in known:
            raise GatePolicyError(
                f"unknown setting {name!r} for gate {gate!r}; known settings: {', '.join(known)}",
                field=path)
        values[name] = _check_value(path, known[name], value)
    return rule_type(**values)


def _check_value(path: str, f, value: Any):
    default = f.default
    if f.name == "action":
        if value not in ACTIONS:
            raise GatePolicyError(f"{path} must be one of {', '.join(ACTIONS)}, got {value!r}", field=path)
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise GatePolicyError(f"{path} must be true or false, got {value!r}", field=path)
        return value
    if isinstance(default, (int, float)):
        numeric = (int, float) if isinstance(default, float) else (int,)
        if isinstance(value, bool) or not isinstance(value, numeric):
            kind = "a number" if isinstance(default, float) else "an integer"
            raise GatePolicyError(f"{path} must be {kind}, got {value!r}", field=path)
        if not math.isfinite(value):
            raise GatePolicyError(f"{path} must be a finite number, got {value!r}", field=path)
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise GatePolicyError(f"{path} must be between {lo} and {hi}, got {value!r}", field=path)
        return type(default)(value)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise GatePolicyError(f"{path} must be a list of strings", field=path)
        if f.name == "kinds":
            bad = [v for v in value if v not in PERSONAL_DATA_KINDS]
            if bad:
                raise GatePolicyError(f"{path} has unknown kind {bad[0]!r}; known kinds: "
                                      f"{', '.join(PERSONAL_DATA_KINDS)}", field=path)
        return tuple(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise GatePolicyError(f"{path} must be a string, got {value!r}", field=path)
        if f.name == "embedder" and value not in ("hashed", "minilm"):
            raise GatePolicyError(f"{path} must be 'hashed' or 'minilm', got {value!r}", field=path)
        return value
    raise GatePolicyError(f"{path} cannot be set", field=path)  # pragma: no cover
