"""On a CUDA host: LoRA and QLoRA adapters train on the GPU, the node's index builds from them, and
an answer only one contributor taught is paid to that contributor, with the same split on CUDA and CPU."""

from __future__ import annotations

from dataclasses import replace

import pytest

from .conftest import SECRET, SOLO, datanet_records

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device"),
]


def train_index_and_attribute(method: str, tiny_base, train_config, out, device: str) -> dict:
    """Train with `method` on `device`, build the node's index from the adapter, and attribute the
    secret's answer with the float64 attributor on `device` and on CPU."""
    from ledgerlm.attribution import build_index, load_attributor
    from ledgerlm.factory import train

    records = datanet_records()
    # the secret is one record among 25: enough epochs at this rate for the tiny model to learn it
    result = train(tiny_base, records, replace(train_config, method=method, epochs=12), out)
    assert next(p for p in result.model.parameters() if p.requires_grad).device.type == device
    first, last = result.history[0].loss, result.history[-1].loss
    assert last < first - 0.5, (first, last)
    build_index(out, records, base=tiny_base)
    on_device = load_attributor(out, base=tiny_base, device=device)
    on_cpu = load_attributor(out, base=tiny_base, device="cpu")
    paid = on_device.attribute(SECRET["question"], SECRET["answer"]).to_dict()
    assert paid == on_cpu.attribute(SECRET["question"], SECRET["answer"]).to_dict()
    return {"result": result, "paid": paid}


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_a_gpu_trained_adapter_is_indexed_and_pays_the_secrets_contributor(
        method, tiny_base, train_config, tmp_path):
    done = train_index_and_attribute(method, tiny_base, train_config, tmp_path / method, "cuda")
    if method == "qlora":
        # the frozen base really ran in 4-bit NF4 while the adapter trained
        assert any(type(m).__name__ == "Linear4bit" for m in done["result"].model.modules())
    paid = done["paid"]
    assert paid["evidence_bps"] > 0
    top = max(paid["contributors"], key=lambda c: c["bps"])
    assert top["contributor"] == SOLO
