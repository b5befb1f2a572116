"""Validator agent: scores its assigned contributions from the gate findings, commits, waits, reveals.

    LEDGERLM_PASSPHRASE=... python examples/agents/validator.py --agent checker

It votes with the stake it was created with (`ledgerlm agent create ... --stake AMOUNT`): votes that agree
with the stake-weighted consensus earn a share of the validators' fees, outliers are slashed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import emit, open_wallet, parser  # noqa: E402

from ledgerlm.agents import AgentWallet  # noqa: E402

GOOD, BAD = 90, 10


def score(task: dict) -> int:
    """A contribution the gates flagged, or whose text is mostly one repeated character, scores low."""
    if task["flags"]:
        return BAD
    text = " ".join(str(v) for v in (task["payload"] or {}).values()) if isinstance(task["payload"], dict) \
        else str(task["payload"] or "")
    letters = [c for c in text.lower() if c.isalpha()]
    return BAD if not letters or max(letters.count(c) for c in set(letters)) > 0.5 * len(letters) else GOOD


def validate_rounds(wallet: AgentWallet, *, wait: bool = True) -> dict:
    tasks = [t for t in wallet.validation_tasks()["tasks"] if t["phase"] == "commit"]
    rounds: dict[int, dict] = {}
    for t in tasks:
        rounds.setdefault(t["round_id"], {"scores": {}, "commit_deadline": t["commit_deadline"]})
        rounds[t["round_id"]]["scores"][t["contribution_id"]] = score(t)
    for round_id, r in rounds.items():
        wallet.commit_votes(round_id, r["scores"])
    for round_id, r in rounds.items():
        while wait and int(time.time()) <= r["commit_deadline"]:  # rounds compare whole seconds
            time.sleep(0.2)
        wallet.reveal_votes(round_id)
    return {"rounds": {str(k): {str(c): s for c, s in r["scores"].items()} for k, r in rounds.items()}}


def main() -> None:
    p = parser("Score assigned contributions, commit and reveal the votes.")
    args = p.parse_args()
    emit(validate_rounds(open_wallet(args)))


if __name__ == "__main__":
    main()
