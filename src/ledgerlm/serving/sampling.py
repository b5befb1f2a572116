"""Choosing the next token: greedy at temperature 0, otherwise temperature and nucleus (top-p) sampling."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledgerlm.serving.errors import ServingError

# Every generated token is matched against each stop string's prefixes, so their length bounds that work.
MAX_STOP_CHARS = 256
# What torch.Generator.manual_seed takes.
SEED_RANGE = (-(2**63), 2**64 - 1)
# The finish reason of a call stopped because its client left (beside OpenAI's "stop" and "length").
CANCELLED = "cancelled"


@dataclass(frozen=True)
class SamplingParams:
    """How one request decodes; `seed` makes sampled output repeatable."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.max_tokens < 1:
            raise ServingError("max_tokens must be at least 1", field="max_tokens")
        if not 0.0 <= self.temperature <= 2.0:
            raise ServingError("temperature must be between 0 and 2", field="temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise ServingError("top_p must be in (0, 1]", field="top_p")
        if len(self.stop) > 4 or any(not s for s in self.stop):
            raise ServingError("stop takes at most 4 non-empty strings", field="stop")
        if any(len(s) > MAX_STOP_CHARS for s in self.stop):
            raise ServingError(f"a stop string may be at most {MAX_STOP_CHARS} characters", field="stop")
        if self.seed is not None and not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise ServingError(f"seed must be between {SEED_RANGE[0]} and {SEED_RANGE[1]}", field="seed")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def new_generator(seed: int | None):
    import torch

    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def next_token(logits, params: SamplingParams, generator) -> int:
    """One token id from a row of logits (vocab,), a torch tensor."""
    import torch

    if params.greedy:
        return int(torch.argmax(logits))
    # In float64 from the best logit down: the best token's scaled logit is 0 at any temperature, so a
    # tiny one (1e-40, which overflowed float32 to inf and the softmax to NaN) samples the best token.
    logits = logits.double().cpu()
    probs = torch.softmax((logits - logits.max()) / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least the top token)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= params.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
