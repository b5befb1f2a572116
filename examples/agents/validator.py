"""Validator agent: scores its assigned contributions with a served model and the gate findings, commits, waits,
reveals.

    LEDGERLM_PASSPHRASE=... python examples/agents/validator.py --agent checker [--judge MODEL] [--no-judge]

For a question-and-answer record it asks a judge model the question (a paid call within the agent's policy) and
compares the judge's answer with the contributed one on the words the question does not already hold, so "The reef
is blue." against a judge that says "The reef is copper." agrees on nothing. How far that moves the score depends
on how far the judge deserves trust: its measured quality (held-out token F1 after fine-tuning, the figure the
buyer agent ranks by). A contribution the gates flagged, or whose text is degenerate, scores low whatever the
model says. Without a judge worth trusting the gate findings decide alone.

It votes with the stake it was created with (`ledgerlm agent create ... --stake AMOUNT`): votes that agree
with the stake-weighted consensus earn a share of the validators' fees, outliers are slashed.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from buyer import quality  # noqa: E402
from common import emit, open_wallet, parser  # noqa: E402

from ledgerlm.agents import AgentWallet, PolicyRefusal  # noqa: E402

GOOD, BAD = 90, 10
ACCEPT = 60  # the rounds' default acceptance threshold
WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Judge:
    """The served model that scores records, and how far its verdict may move a score (0: not at all)."""

    model: str
    trust: float
    max_tokens: int = 24


def gate_score(task: dict) -> int:
    """A contribution the gates flagged, or whose text is mostly one repeated character, scores low."""
    if task["flags"]:
        return BAD
    record = record_of(task)
    text = " ".join(str(v) for v in record.values()) if record is not None else str(task["payload"] or "")
    letters = [c for c in text.lower() if c.isalpha()]
    return BAD if not letters or max(letters.count(c) for c in set(letters)) > 0.5 * len(letters) else GOOD


def new_words(text: str, question: str) -> list[str]:
    """The words of an answer that the question does not already contain: what the answer claims."""
    asked = set(WORD.findall(question.lower()))
    return [w for w in WORD.findall(text.lower()) if w not in asked]


def agreement(judged: str, answer: str, question: str) -> float:
    """Token F1 between what the judge answered and what the contribution claims (1.0: the same claim)."""
    claimed, said = Counter(new_words(answer, question)), Counter(new_words(judged, question))
    if not claimed:
        return 1.0  # the answer claims nothing the question does not hold: nothing for the judge to contradict
    common = sum((claimed & said).values())
    if not common:
        return 0.0
    precision, recall = common / sum(said.values()), common / sum(claimed.values())
    return 2 * precision * recall / (precision + recall)


def judged_score(prior: int, agreed: float, trust: float) -> int:
    """Blend the gate-based score with the judge's agreement, weighted by how far the judge is trusted, then take a
    side: a vote earns by its closeness to the stake-weighted consensus, which sits where decisive validators put
    it, so a shaded score would earn less than the side it leans to."""
    belief = (1 - trust) * (prior - BAD) / (GOOD - BAD) + trust * agreed
    return GOOD if BAD + (GOOD - BAD) * belief >= ACCEPT else BAD


def pick_judge(wallet: AgentWallet, model: str | None = None) -> Judge | None:
    """`model`, or the served model with the best measured quality; None when no model has earned any trust."""
    catalog = {m["id"]: m for m in wallet.search()["models"]}
    if model is not None and model not in catalog:
        raise SystemExit(f"model {model!r} is not served; served: {', '.join(catalog)}")
    ranked = [catalog[model]] if model else sorted(catalog.values(), key=lambda m: quality(m["metrics"]),
                                                   reverse=True)
    if not ranked or quality(ranked[0]["metrics"]) <= 0:
        return None
    return Judge(ranked[0]["id"], min(1.0, quality(ranked[0]["metrics"])))


def record_of(task: dict) -> dict | None:
    """The task's record as a dict (the queue sends a record as its JSON text); None for a document."""
    payload = task["payload"]
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    return payload if isinstance(payload, dict) else None


def score(task: dict, judge: Judge | None = None, wallet: AgentWallet | None = None) -> int:
    """The agent's vote on one task: the gate findings, then the judge model where it can speak to the record."""
    prior = gate_score(task)
    payload = record_of(task)
    if prior == BAD or judge is None or wallet is None or not isinstance(payload, dict):
        return prior
    question, answer = payload.get("question"), payload.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str):
        return prior
    try:
        said = wallet.call_model(judge.model, question, max_tokens=judge.max_tokens)["answer"]
    except PolicyRefusal:  # out of budget, or the judge is off-policy: the gates decide alone
        return prior
    return judged_score(prior, agreement(said, answer, question), judge.trust)


def validate_rounds(wallet: AgentWallet, *, wait: bool = True, judge: Judge | None = None) -> dict:
    tasks = [t for t in wallet.validation_tasks()["tasks"] if t["phase"] == "commit"]
    rounds: dict[int, dict] = {}
    for t in tasks:
        rounds.setdefault(t["round_id"], {"scores": {}, "commit_deadline": t["commit_deadline"]})
        rounds[t["round_id"]]["scores"][t["contribution_id"]] = score(t, judge, wallet)
    for round_id, r in rounds.items():
        wallet.commit_votes(round_id, r["scores"])
    for round_id, r in rounds.items():
        while wait and int(time.time()) <= r["commit_deadline"]:  # rounds compare whole seconds
            time.sleep(0.2)
        wallet.reveal_votes(round_id)
    return {"judge": None if judge is None else {"model": judge.model, "trust": judge.trust},
            "rounds": {str(k): {str(c): s for c, s in r["scores"].items()} for k, r in rounds.items()}}


def main() -> None:
    p = parser("Score assigned contributions with a judge model and the gate findings, commit and reveal the votes.")
    p.add_argument("--judge", help="the served model that judges records [default: the best measured one]")
    p.add_argument("--no-judge", action="store_true", help="score from the gate findings alone")
    args = p.parse_args()
    wallet = open_wallet(args)
    emit(validate_rounds(wallet, judge=None if args.no_judge else pick_judge(wallet, args.judge)))


if __name__ == "__main__":
    main()
