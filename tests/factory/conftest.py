"""Shared fixtures: one tiny random Llama and a small Q&A Datanet export, built offline."""

from __future__ import annotations

import pytest

COLOURS = ["red", "blue", "green", "amber", "violet", "silver", "black", "white"]


def qa_records(n: int = 24) -> list[dict]:
    return [
        {"question": f"What colour is crate {i}?", "answer": f"Crate {i} is {COLOURS[i % len(COLOURS)]}."}
        for i in range(n)
    ]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    # Tiny models gain nothing from threads, and on a busy machine spinning OpenMP workers
    # make every small matmul wait for a descheduled sibling.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    from ledgerlm.factory import register_local, tiny_random_model

    root = tmp_path_factory.mktemp("factory")
    texts = [r["question"] + " " + r["answer"] for r in qa_records(40)]
    path = tiny_random_model(root / "tiny-llama", texts)
    return register_local(root / "models", "tiny", path)


@pytest.fixture(scope="session")
def tokenizer(tiny_base):
    from ledgerlm.factory import load_tokenizer

    return load_tokenizer(tiny_base)


@pytest.fixture(scope="session")
def records() -> list[dict]:
    return qa_records()


@pytest.fixture(scope="session")
def fast_config():
    from ledgerlm.factory import TrainConfig

    return TrainConfig(rank=4, alpha=8, dropout=0.0, epochs=4, lr=1e-2, batch_size=2, max_len=64,
                       eval_split=0.2, warmup=0.0, seed=0)

