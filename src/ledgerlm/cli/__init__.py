"""The `ledgerlm` command line: thin Typer commands over the SDK, one module per room."""

import os
import warnings


def _quiet_libraries() -> None:
    """Our own progress bars speak for long work; the ML libraries' bars and notices would drown them."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a model hub, ever
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


_quiet_libraries()
# Attribution's CUDA passes run under torch's deterministic mode, which needs cuBLAS's fixed
# workspace; cuBLAS reads this once, at its first use, so it is set before any command runs
# (the value is attribution.determinism.CUBLAS_WORKSPACE, not imported here to keep startup light).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from ledgerlm.cli.main import app  # noqa: E402


def main() -> None:
    app()


__all__ = ["app", "main"]
