"""Compute offers, jobs and the specs of the work a job asks for (training steps or served answers)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

KINDS = ("train", "serve")


class TrainingSpec(BaseModel):
    """A LoRA fine-tune of the offer's base model on `texts`: `steps` plain SGD steps in float64 from a seeded
    start, each on a batch drawn by (seed, step), so any one step can be re-executed from the checkpoint before it."""

    texts: list[Annotated[str, Field(min_length=1, max_length=4000)]] = Field(min_length=1, max_length=256)
    steps: int = Field(ge=1, le=64)
    batch_size: int = Field(default=2, ge=1, le=16)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    rank: int = Field(default=4, ge=1, le=64)
    seed: int = Field(default=0, ge=0, lt=2**32)
    max_len: int = Field(default=64, ge=8, le=512)


class ServingSpec(BaseModel):
    """Greedy answers of the offer's base model to `prompts`."""

    prompts: list[Annotated[str, Field(min_length=1, max_length=4000)]] = Field(min_length=1, max_length=32)
    max_new_tokens: int = Field(default=16, ge=1, le=128)


class Offer(BaseModel):
    id: int
    provider: str
    kind: Literal["train", "serve"]
    hardware: str
    base_model: str
    price: str  # base units per job
    state: str
    stake: str = "0"  # the provider's bond under the provider role, read from the chain
    created_at: int


class Job(BaseModel):
    id: int
    offer_id: int
    provider: str
    requester: str
    kind: Literal["train", "serve"]
    base_model: str
    spec: dict
    spec_hash: str
    amount: str
    epoch: int
    payment_state: str
    payment_tx: str | None
    state: str  # accepted | verified | rejected | expired | unpaid
    result: dict | None = None
    result_hash: str | None = None
    spot_check: dict | None = None
    slash_tx: str | None = None
    slash_amount: str | None = None
    created_at: int
    reported_at: int | None = None

    def visible_to(self, reader: str | None, *, operator: bool = False) -> dict:
        """The job as `reader` may see it: whole for its requester, its provider and the operator; for anyone
        else without the spec, the result and the spot-check's recomputed values (they derive from the
        requester's data), but with the verdict and the evidence hash the Staking outcome commits to."""
        job = self.model_dump()
        if operator or reader in (self.provider, self.requester):
            return job
        check = self.spot_check or {}
        return {**job, "spec": None, "result": None,
                "spot_check": {k: check[k] for k in ("kind", "passed", "evidence_hash") if k in check} or None}
