"""Buyer agent: answers a question with the best-value model it may use (eval quality per price), within budget.

    LEDGERLM_PASSPHRASE=... python examples/agents/buyer.py --agent buyer --question "What colour is the reef?"
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import emit, open_wallet, parser  # noqa: E402

from ledgerlm.agents import AgentWallet, PolicyRefusal  # noqa: E402


def quality(metrics: dict) -> float:
    """Held-out token F1 after fine-tuning, else 1/perplexity; 0 for a model without measured metrics."""
    for source in ("eval", "trained_sample"):
        after = (metrics.get(source) or {}).get("after") or {}
        if after.get("token_f1") is not None:
            return float(after["token_f1"])
        if after.get("perplexity"):
            return 1.0 / float(after["perplexity"])
    return 0.0


def rank(models: list[dict]) -> list[dict]:
    """Best value first: quality per price (a free model with any quality beats every priced one)."""
    def value(m: dict) -> tuple[float, float]:
        price = int(m["price_per_1k"])
        q = quality(m["metrics"])
        return (q / price if price else float("inf") if q else 0.0, -price)

    return sorted(models, key=value, reverse=True)


def buy_answer(wallet: AgentWallet, question: str, *, max_tokens: int = 32) -> dict:
    """Try models in order of value; a model the policy refuses (not allowed, too dear) is skipped."""
    tried, ranked = [], rank(wallet.search()["models"])
    for model in ranked:
        try:
            paid = wallet.call_model(model["id"], question, max_tokens=max_tokens)
        except PolicyRefusal as exc:
            tried.append({"model": model["id"], "refused": exc.field})
            if exc.field in ("paused", "budget"):
                break
            continue
        return {**paid, "value_order": [m["id"] for m in ranked], "skipped": tried}
    return {"answer": None, "skipped": tried}


def main() -> None:
    p = parser("Answer a question with the best-value model within the agent's budget.")
    p.add_argument("--question", required=True)
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args()
    emit(buy_answer(open_wallet(args), args.question, max_tokens=args.max_tokens))


if __name__ == "__main__":
    main()
