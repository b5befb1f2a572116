"""Content hashes over model files, the fingerprints that lineage records and verifies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")
_CHUNK = 1 << 20


def files_sha256(paths: list[Path]) -> str:
    """sha256 over each file's name and bytes, in name order, so renaming or editing either shows."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files of a Hugging Face model directory: safetensors if any, else PyTorch .bin."""
    for suffix in WEIGHT_SUFFIXES:
        found = sorted(p for p in model_dir.glob(f"*{suffix}") if p.is_file())
        if found:
            return found
    return []


def canonical_json_sha256(value: object) -> str:
    """sha256 of JSON with sorted keys and no whitespace, stable across runs and machines."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
