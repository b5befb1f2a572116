"""What a fine-tuned model was made from, written as `lineage.json` beside its adapter and checkable.

The card pins the base model by the hash of its weight files, the data by the Datanet version
roots it was trained on, the recipe by the hash of the canonical JSON of the training config, and
the result by the hash of the adapter files; `verify_lineage` recomputes each from the files.
`merge` bakes an adapter into full weights for engines that cannot load adapters.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ledgerlm import __version__
from ledgerlm.factory.basemodels import BaseModel, describe_model_dir
from ledgerlm.factory.digest import canonical_json_sha256, files_sha256, weight_files
from ledgerlm.factory.errors import FactoryError, ModelNotFoundError

LINEAGE_FILE = "lineage.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
_HEX = re.compile(r"^(0x)?[0-9a-fA-F]+\Z")


@dataclass(frozen=True)
class ModelCard:
    """The lineage of one fine-tuned model."""

    model_id: str
    base_model: str
    base_sha256: str
    datanet_roots: list[str]
    config: dict
    config_sha256: str
    adapter_sha256: str
    data_sha256: str
    metrics: dict = field(default_factory=dict)
    created_at: str = ""
    ledgerlm_version: str = __version__
    # the access paid to train on a private Datanet version: payment id, amount, epoch, escrow transaction
    licence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        return cls(**data)


@dataclass(frozen=True)
class Mismatch:
    """A recorded hash that the files no longer reproduce."""

    field: str
    recorded: str
    actual: str


def adapter_sha256(model_dir: Path) -> str:
    """sha256 over the files PEFT loads: the adapter weights and adapter_config.json."""
    paths = [Path(model_dir) / name for name in ADAPTER_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:  # named by its directory's name, not its path: the message may reach anyone reading the model
        raise ModelNotFoundError(
            f"{Path(model_dir).name!r} is not a trained model: {', '.join(missing)} missing", field="model"
        )
    return files_sha256(paths)


def make_card(
    model_id: str,
    base: BaseModel,
    model_dir: Path,
    config: dict,
    data_sha256: str,
    datanet_roots: list[str],
    metrics: dict | None = None,
) -> ModelCard:
    """The card for the adapter in `model_dir`, hashing its files now."""
    if not model_id or not all(c.isalnum() or c in "-_." for c in model_id):
        raise FactoryError(
            f"model id {model_id!r} may use only letters, digits, '-', '_' and '.'", field="model_id"
        )
    for root in datanet_roots:
        if not isinstance(root, str) or not _HEX.match(root):
            raise FactoryError(f"Datanet version root {root!r} is not a hex string",
                               field="datanet_roots")
    return ModelCard(
        model_id=model_id,
        base_model=base.name,
        base_sha256=base.sha256,
        datanet_roots=list(datanet_roots),
        config=config,
        config_sha256=canonical_json_sha256(config),
        adapter_sha256=adapter_sha256(model_dir),
        data_sha256=data_sha256,
        metrics=metrics or {},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def write_lineage(model_dir: Path, card: ModelCard) -> Path:
    path = Path(model_dir) / LINEAGE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_lineage(model_dir: Path) -> ModelCard:
    path = Path(model_dir) / LINEAGE_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{Path(model_dir).name!r} has no {LINEAGE_FILE}", field="model")
    return ModelCard.from_dict(json.loads(path.read_text()))


def verify_lineage(model_dir: Path, base: BaseModel | None = None) -> list[Mismatch]:
    """Recompute the card's hashes from the files; an empty list means everything matches.

    With `base`, its weight files are hashed too and must be the ones the model was trained on.
    """
    card = read_lineage(model_dir)
    found = []
    actual_adapter = adapter_sha256(model_dir)
    if actual_adapter != card.adapter_sha256:
        found.append(Mismatch("adapter_sha256", card.adapter_sha256, actual_adapter))
    actual_config = canonical_json_sha256(card.config)
    if actual_config != card.config_sha256:
        found.append(Mismatch("config_sha256", card.config_sha256, actual_config))
    if base is not None:
        if base.name != card.base_model:
            found.append(Mismatch("base_model", card.base_model, base.name))
        actual_base = files_sha256(weight_files(base.path))
        if actual_base != card.base_sha256:
            found.append(Mismatch("base_sha256", card.base_sha256, actual_base))
    return found


def merge(model_dir: Path, base: BaseModel, out_dir: Path) -> BaseModel:
    """Write base + adapter as one full-weight safetensors model (with tokenizer) to `out_dir`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ledgerlm.factory.loading import load_tokenizer

    card = read_lineage(model_dir)
    problems = verify_lineage(model_dir)
    if problems:
        raise FactoryError(
            f"refusing to merge {model_dir}: {problems[0].field} does not match its lineage",
            field="model_dir", status=409,
        )
    if card.base_sha256 != base.sha256:
        raise FactoryError(
            f"{card.model_id} was trained on base {card.base_model} ({card.base_sha256[:12]}), "
            f"not {base.name} ({base.sha256[:12]})",
            field="base", status=409,
        )
    model = AutoModelForCausalLM.from_pretrained(base.path)
    merged = PeftModel.from_pretrained(model, str(model_dir)).merge_and_unload()
    out_dir = Path(out_dir)
    merged.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(base).save_pretrained(out_dir)
    return describe_model_dir(out_dir, f"{card.model_id}-merged", source=f"merged:{card.model_id}")
