"""Compute providers: offers of hardware for training or serving jobs at a price, jobs matched and paid through
the escrow, and spot-checks that re-execute reported work and slash a provider caught cheating."""

from ledgerlm.providers.errors import ProviderError
from ledgerlm.providers.market import SPOT_CHECK_ROUND_BASE, ComputeMarket, parse_spec
from ledgerlm.providers.schemas import KINDS, Job, Offer, ServingSpec, TrainingSpec
from ledgerlm.providers.spotcheck import TOLERANCE, SpotCheck

__all__ = ["KINDS", "SPOT_CHECK_ROUND_BASE", "TOLERANCE", "ComputeMarket", "Job", "Offer", "ProviderError",
           "ServingSpec", "SpotCheck", "TrainingSpec", "parse_spec", "run_job"]


def run_job(base, kind: str, spec: dict, progress=None) -> tuple[dict, dict[str, bytes]]:
    """The provider's side: do a job's work on `base`; returns its result and the files it reports (training
    checkpoints by sha256; none for serving)."""
    parsed = parse_spec(kind, spec)
    if kind == "train":
        from ledgerlm.providers.training import run_training

        return run_training(base, parsed, progress)
    from ledgerlm.providers.inference import run_serving

    return run_serving(base, parsed, progress), {}
