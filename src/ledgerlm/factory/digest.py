"""Content hashes over model files, the fingerprints that lineage records and verifies."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin")
_CHUNK = 1 << 20
# Verifying a model's lineage hashes its base model's weights (hundreds of MB), and anyone may ask for
# that; the hash of files that have not changed since is remembered instead of read again. A file counts
# as unchanged while its identity, size, mtime and ctime are; ctime moves on every write and cannot be
# set back, so rewriting a file and restoring its mtime still shows.
_CACHE_ENTRIES = 64
# A file written within this many seconds of being hashed may change again without its timestamps
# moving (they tick coarser than writes land), so such a hash is not remembered.
_SETTLE_SECONDS = 2.0
_cache: OrderedDict[tuple, str] = OrderedDict()
_cache_lock = threading.Lock()


def _stamp(path: Path) -> tuple:
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def files_sha256(paths: list[Path]) -> str:
    """sha256 over each file's name and bytes, in name order, so renaming or editing either shows.

    Remembered for files whose stat says they are unchanged since they were last hashed."""
    ordered = sorted((Path(p) for p in paths), key=lambda p: p.name)
    key = tuple(_stamp(p) for p in ordered)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = _hash_files(ordered)
    settled = time.time_ns() - max((max(k[4], k[5]) for k in key), default=0) > _SETTLE_SECONDS * 1e9
    # remembered only when no file changed while it was read
    if settled and tuple(_stamp(p) for p in ordered) == key:
        with _cache_lock:
            _cache[key] = value
            while len(_cache) > _CACHE_ENTRIES:
                _cache.popitem(last=False)
    return value


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
