"""Serving: the multi-adapter inference engine, API keys and budgets, and a signed receipt per completion."""

from ledgerlm.serving.budget import Budget
from ledgerlm.serving.catalog import AdapterRef, Catalog, ServedModel
from ledgerlm.serving.errors import (
    AdapterLoadError,
    ApiKeyError,
    ModelNotServedError,
    PaymentRequiredError,
    RateLimitError,
    ReceiptError,
    ServingError,
)
from ledgerlm.serving.keys import KEY_PREFIX, ApiKey, ApiKeys, key_sha256, new_api_key
from ledgerlm.serving.receipts import AttributionWorker, Receipt, ReceiptLog
from ledgerlm.serving.sampling import SamplingParams
from ledgerlm.serving.service import CallEvent, Serving, ServingSettings

# The engine and the adapter cache import torch: loaded on first use, so keys and receipts stay light.
_TORCH = {"AdapterCache": "adapters", "read_adapter": "adapters", "Engine": "engine",
          "EngineSettings": "engine", "Generation": "engine", "GenerationResult": "engine"}


def __getattr__(name: str):
    if name in _TORCH:
        import importlib

        return getattr(importlib.import_module(f"ledgerlm.serving.{_TORCH[name]}"), name)
    raise AttributeError(f"module 'ledgerlm.serving' has no attribute {name!r}")


__all__ = [
    "KEY_PREFIX",
    "AdapterCache",
    "AdapterLoadError",
    "AdapterRef",
    "ApiKey",
    "ApiKeyError",
    "ApiKeys",
    "AttributionWorker",
    "Budget",
    "CallEvent",
    "Catalog",
    "Engine",
    "EngineSettings",
    "Generation",
    "GenerationResult",
    "ModelNotServedError",
    "PaymentRequiredError",
    "RateLimitError",
    "Receipt",
    "ReceiptError",
    "ReceiptLog",
    "SamplingParams",
    "ServedModel",
    "Serving",
    "ServingError",
    "ServingSettings",
    "key_sha256",
    "new_api_key",
    "read_adapter",
]
