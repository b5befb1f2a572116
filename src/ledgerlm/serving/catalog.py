"""Which models a node serves: its one resident base model and every published adapter trained on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ledgerlm.economy import FeeShares, fee_policy_views
from ledgerlm.serving.errors import ModelNotServedError, ServingError

# A base model has no developer, Datanet or contributors: its whole fee is the node's.
BASE_FEE_SHARES = FeeShares(node_bps=10_000, developer_bps=0, contributors_bps=0, validators_bps=0)


@dataclass(frozen=True)
class AdapterRef:
    """Which adapter a request wants: the served model id and the directory holding its PEFT files."""

    model_id: str
    path: Path


@dataclass(frozen=True)
class ServedModel:
    """A model name a consumer can call, with everything a receipt needs about it."""

    id: str
    base_model: str
    adapter: AdapterRef | None
    adapter_sha256: str | None
    developer: str | None
    price_per_1k: int
    fee_shares: FeeShares
    datanet: str | None
    datanet_roots: tuple[dict, ...]
    created_at: int

    def to_openai(self, fees: dict | None = None) -> dict:
        """The OpenAI model object; `fees` (from `Catalog.listed`) gives the split in force now and a change
        announced for a later epoch, else the split the model was published with is shown."""
        fees = fees or {"fee_policy": self.fee_shares.to_dict(), "fee_policy_announced": None}
        return {
            "id": self.id, "object": "model", "created": self.created_at,
            "owned_by": self.developer or "ledgerlm-node",
            "x_ledgerlm": {
                "base_model": self.base_model, "adapter_sha256": self.adapter_sha256,
                "price_per_1k": str(self.price_per_1k), **fees, "datanet_roots": list(self.datanet_roots),
            },
        }


def pick_base(configured: str, base_names: list[str], published_bases: list[str]) -> str:
    """The base model to keep resident: the configured one, else the one most published adapters use."""
    if configured:
        if configured not in base_names:
            raise ServingError(f"serving_base_model {configured!r} is not a registered base model "
                               f"(known: {', '.join(base_names) or 'none'})", field="serving_base_model")
        return configured
    if published_bases:
        return max(sorted(set(published_bases)), key=published_bases.count)
    if len(base_names) == 1:
        return base_names[0]
    raise ServingError("no base model to serve: register or pull one, or set serving_base_model in config.toml",
                       field="serving_base_model", status=503)


class Catalog:
    """Reads the factory's published models on every call, so a model published a second ago is served."""

    def __init__(self, factory, models_dir: Path, *, configured_base: str = "", base_price_per_1k: int = 0):
        self.factory = factory
        self.models_dir = Path(models_dir)
        self.configured_base = configured_base
        self.base_price_per_1k = base_price_per_1k

    def base_name(self) -> str:
        from ledgerlm.factory import list_models

        return pick_base(self.configured_base, [b.name for b in list_models(self.models_dir)],
                         self.factory.published_bases())

    def list(self, model_id: str | None = None) -> list[ServedModel]:
        """The base model and the models published on it (with `model_id`, the base and that one model only)."""
        from ledgerlm.factory import get_model

        base = get_model(self.models_dir, self.base_name())
        served = [ServedModel(base.name, base.name, None, None, None, self.base_price_per_1k, BASE_FEE_SHARES,
                              None, (), int(Path(base.path).stat().st_mtime))]
        for record in self.factory.published(base=base.name, model_id=model_id):
            served.append(ServedModel(
                id=record.id, base_model=record.base_model,
                adapter=AdapterRef(record.id, Path(record.path)), adapter_sha256=record.card["adapter_sha256"],
                developer=record.developer, price_per_1k=int(record.price_per_1k or 0),
                fee_shares=FeeShares.from_dict(record.fee_policy), datanet=record.datanet,
                datanet_roots=({"datanet": record.datanet, "version": record.version, "root": record.version_root},),
                created_at=record.created_at,
            ))
        return served

    def listed(self, served: list[ServedModel]) -> list[dict]:
        """The OpenAI model objects of `served`, each showing the fee split that prices calls in the open epoch
        and, apart, a change announced for a later one with the epoch it takes effect."""
        fees = fee_policy_views(self.factory.db, {m.id: m.fee_shares for m in served})
        return [m.to_openai(fees[m.id]) for m in served]

    def get(self, name: str) -> ServedModel:
        # one model's row, not every model's, on every call: the whole list is read only to name them in a refusal
        for model in self.list(model_id=name):
            if model.id == name:
                return model
        served = self.list()
        raise ModelNotServedError(
            f"model {name!r} is not served here; available: {', '.join(m.id for m in served)}", field="model")
