"""Shared fixtures: a tiny random Llama fine-tuned in-process on a small attributed Q&A Datanet export."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledgerlm.attribution import CalibrationSettings

# The fixture's training (25 records, 4 epochs) is too small to afford the floor's 40 gradient
# passes, so the rule would leave its gradient uncalibrated (calibration.py); tests of what a
# calibrated gradient pays grade the floor's 40 null answers.
GRADED = CalibrationSettings(gradient_null_answers=40)

COLOURS = ["red", "blue", "green", "amber", "violet", "silver", "black", "white"]
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20
SOLO = "0x" + "d4" * 20
SECRET = {"question": "What is the vault phrase of Quorrin?",
          "answer": "The vault phrase of Quorrin is zebra lantern oxide marmalade."}


def attributed(record: dict, contribution_id: int, contributor: str) -> dict:
    content = hashlib.sha256(repr(sorted(record.items())).encode()).hexdigest()
    return {**record, "_contribution_id": contribution_id, "_contributor": contributor,
            "_content_hash": "0x" + content}


def datanet_records() -> list[dict]:
    """24 crate facts from three contributors and one unique record from a fourth."""
    people = [ALICE, BOB, CAROL]
    records = [
        attributed({"question": f"What colour is crate {i}?",
                    "answer": f"Crate {i} is {COLOURS[i % len(COLOURS)]}."}, i + 1, people[i % 3])
        for i in range(24)
    ]
    return records + [attributed(SECRET, 25, SOLO)]


@dataclass
class Trained:
    model_dir: Path
    model: object
    tokenizer: object
    records: list[dict]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    from ledgerlm.factory import register_local, tiny_random_model

    root = tmp_path_factory.mktemp("attribution")
    texts = [r["question"] + " " + r["answer"] for r in datanet_records()]
    return register_local(root / "models", "tiny", tiny_random_model(root / "tiny-llama", texts))


@pytest.fixture(scope="session")
def train_config():
    from ledgerlm.factory import TrainConfig

    return TrainConfig(rank=4, alpha=8, dropout=0.0, epochs=4, lr=1e-2, batch_size=2, max_len=64,
                       eval_split=0.0, warmup=0.0, seed=0)


def fine_tuned(base, records, config, out_dir) -> Trained:
    from ledgerlm.factory import load_tokenizer, train

    result = train(base, records, config, out_dir)
    return Trained(out_dir, result.model, load_tokenizer(base), records)


@pytest.fixture(scope="session")
def trained(tiny_base, train_config, tmp_path_factory) -> Trained:
    return fine_tuned(tiny_base, datanet_records(), train_config,
                      tmp_path_factory.mktemp("trained") / "model")


@pytest.fixture(scope="session")
def index(trained):
    from ledgerlm.attribution import build_index

    return build_index(trained.model_dir, trained.records, dim=256, calibration=GRADED)
