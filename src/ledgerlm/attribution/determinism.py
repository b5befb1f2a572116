"""Settings under which attribution's gradient passes give the same numbers on every run, CPU or CUDA.

What makes a split reproducible is mostly elsewhere: the attributor's model computes in float64
(attribute.load_attributor), features accumulate in float64 (features.py) and scores are rounded
to SCORE_DECIMALS before any bar or ranking (attribute.py), so the order in which a thread count
or a device sums numbers moves a score by ~1e-15, far below the rounding. CUDA adds run-to-run
noise of its own, switched off here for the duration of a pass:

  * kernels that accumulate with atomics (index_add, scatter_add, the backward of attention):
    `torch.use_deterministic_algorithms(True)` picks their deterministic versions and makes any
    operation that has none raise instead of silently varying;
  * cuBLAS splitting a product's reduction over a workspace shared between streams: it needs
    `CUBLAS_WORKSPACE_CONFIG` set before cuBLAS first runs in the process (`configure_cublas`;
    the `ledgerlm` command sets it before anything else);
  * TF32 and reduced-precision reductions, which round float32 products to 10 bits of mantissa
    (a model passed in float32 rather than loaded by the attributor): disabled.

The one operation of a pass known to lack a deterministic CUDA kernel, the negative
log-likelihood of the answer's tokens, runs on CPU instead (`loss_on_cpu`, used by features.py).
Should a model hold another (torch raises: `is_nondeterministic_error`), the answer's whole pass
runs on a CPU copy of the model (`features.answer_feature`): the same float64 feature, slower.

These are process-wide torch settings, not per thread: passes of several attributors may overlap,
so the first to enter sets them and the last to leave restores what was there before. Other work
running on the device meanwhile (an engine generating) runs under them too — deterministically,
a little slower.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CUBLAS_WORKSPACE = ":4096:8"  # one of the two values cuBLAS documents as deterministic

_lock = threading.Lock()
_entered = 0
_saved: dict[str, object] = {}


def configure_cublas() -> None:
    """Give cuBLAS the fixed workspace its deterministic mode needs, unless the operator chose one.

    cuBLAS reads it once, when it first runs in the process, so this belongs at process start.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def _flags() -> dict[str, tuple[object, str, object]]:
    """name -> (owner, attribute, value during a pass) for every torch flag a pass fixes."""
    import torch

    cuda, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    return {
        "matmul.allow_tf32": (cuda, "allow_tf32", False),
        "matmul.allow_fp16_reduced_precision_reduction":
            (cuda, "allow_fp16_reduced_precision_reduction", False),
        "matmul.allow_bf16_reduced_precision_reduction":
            (cuda, "allow_bf16_reduced_precision_reduction", False),
        "cudnn.allow_tf32": (cudnn, "allow_tf32", False),
        "cudnn.deterministic": (cudnn, "deterministic", True),
        "cudnn.benchmark": (cudnn, "benchmark", False),
    }


def torch_settings() -> dict[str, object]:
    """The current values of every setting `deterministic_torch` changes (for tests and reports)."""
    import torch

    settings = {name: getattr(owner, attr) for name, (owner, attr, _) in _flags().items()}
    settings["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    settings["deterministic_warn_only"] = torch.is_deterministic_algorithms_warn_only_enabled()
    return settings


@contextmanager
def deterministic_torch() -> Iterator[None]:
    """Deterministic algorithms on (raising on any operation without one), TF32 off; restored after."""
    global _entered, _saved
    import torch

    with _lock:
        if _entered == 0:
            configure_cublas()  # no-op when set at start; too late to resize a workspace in use
            _saved = torch_settings()
            for owner, attr, value in _flags().values():
                setattr(owner, attr, value)
            torch.use_deterministic_algorithms(True, warn_only=False)
        _entered += 1
    try:
        yield
    finally:
        with _lock:
            _entered -= 1
            if _entered == 0:
                for name, (owner, attr, _) in _flags().items():
                    setattr(owner, attr, _saved[name])
                torch.use_deterministic_algorithms(bool(_saved["deterministic_algorithms"]),
                                                   warn_only=bool(_saved["deterministic_warn_only"]))


@contextmanager
def deterministic_passes(device) -> Iterator[None]:
    """`deterministic_torch` around a pass on a CUDA device; nothing to change on CPU."""
    if getattr(device, "type", str(device)) == "cuda":
        with deterministic_torch():
            yield
    else:
        yield


def is_nondeterministic_error(exc: BaseException) -> bool:
    """Whether `exc` is torch refusing an operation that has no deterministic kernel here."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "does not have a deterministic implementation" in text
        or "this operation is not deterministic" in text)  # cuBLAS without its fixed workspace


def loss_on_cpu(device) -> bool:
    """Whether a pass on `device` computes its token losses on CPU (CUDA's NLL has no deterministic
    kernel; on CPU the logits are already there)."""
    return getattr(device, "type", str(device)) == "cuda"
