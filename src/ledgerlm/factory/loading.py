"""Loading base models and adapters onto a device in the precision training and serving expect.

CPU runs in float32 (bfloat16 matmuls on CPU are slow and lossy); CUDA runs the frozen base in
bfloat16 with float32 adapter weights. QLoRA loads the base in 4-bit NF4 through bitsandbytes,
which needs CUDA.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ledgerlm.factory.basemodels import BaseModel
from ledgerlm.factory.errors import TrainConfigError

# transformers patches process-wide functions while it loads a model (PreTrainedModel.tie_weights, torch.nn.init's
# functions, the default dtype) and puts them back afterwards: two loads at once put back each other's patches, and
# every later load of a model with tied embeddings (SmolLM2's) left its head on the meta device, so every training
# job of the node failed. Every model load in the node takes this lock.
MODEL_LOADS = threading.RLock()


def from_pretrained(cls, *args, **kwargs):
    """`cls.from_pretrained(...)` under `MODEL_LOADS`."""
    with MODEL_LOADS:
        return cls.from_pretrained(*args, **kwargs)


def pick_device(device: str | None = None):
    """The given torch device, else CUDA when present, else CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def base_dtype(device):
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(base: BaseModel):
    from transformers import AutoTokenizer

    from ledgerlm.factory.dataset import ensure_chat_template

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(base: BaseModel, device, *, quantize_4bit: bool = False, dtype=None):
    """The frozen base causal LM on `device`; 4-bit NF4 when `quantize_4bit` (QLoRA); in `dtype`
    when given, else in the device's `base_dtype`."""
    import torch
    from transformers import AutoModelForCausalLM

    if quantize_4bit:
        require_qlora_support()
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        index = device.index if device.index is not None else torch.cuda.current_device()
        return from_pretrained(
            AutoModelForCausalLM, base.path, quantization_config=quant, dtype=torch.bfloat16, device_map={"": index}
        )
    model = from_pretrained(AutoModelForCausalLM, base.path, dtype=dtype or base_dtype(device))
    return model.to(device)


def load_adapted_model(base: BaseModel, adapter_dir: Path, device=None, *, trainable: bool = False,
                       dtype=None):
    """The base model with a saved PEFT adapter on top, in eval mode unless `trainable`; the base in
    `dtype` when given (else the device's `base_dtype`)."""
    from peft import PeftModel

    device = pick_device(device) if not hasattr(device, "type") else device
    model = from_pretrained(PeftModel, load_base_model(base, device, dtype=dtype), str(adapter_dir),
                            is_trainable=trainable)
    return model.train() if trainable else model.eval()


def require_qlora_support() -> None:
    """Raise a TrainConfigError unless this machine can run QLoRA (CUDA + bitsandbytes)."""
    import torch

    if not torch.cuda.is_available():
        raise TrainConfigError(
            "QLoRA needs a CUDA GPU with bitsandbytes; this machine has no CUDA device. "
            "Use --method lora, which trains on CPU or GPU.",
            field="method",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise TrainConfigError(
            "QLoRA needs a CUDA GPU with bitsandbytes, and bitsandbytes is not installed "
            "(pip install bitsandbytes). Or use --method lora.",
            field="method",
        ) from exc
