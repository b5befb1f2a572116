"""Reproducible attribution: the deterministic scope restores torch's settings, the attributor's
float64 pass gives the same split on any thread count, and (on a CUDA host) on CUDA and CPU alike."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ledgerlm.attribution import attribute, load_attributor
from ledgerlm.attribution.attribute import prepare_answer
from ledgerlm.attribution.determinism import (
    CUBLAS_WORKSPACE,
    deterministic_passes,
    deterministic_torch,
    is_nondeterministic_error,
    torch_settings,
)
from ledgerlm.attribution.features import answer_feature
from ledgerlm.attribution.verify import compare

from .conftest import SECRET

# Paid on gradient evidence alone (no span of it is rare enough), once the bar is lowered below
QUESTION, ANSWER = "What colour is crate 7?", "Seven is a white one."
PASS_SETTINGS = {"matmul.allow_tf32": False, "matmul.allow_fp16_reduced_precision_reduction": False,
                 "matmul.allow_bf16_reduced_precision_reduction": False, "cudnn.allow_tf32": False,
                 "cudnn.deterministic": True, "cudnn.benchmark": False,
                 "deterministic_algorithms": True, "deterministic_warn_only": False}


@pytest.fixture
def user_settings():
    """Settings a user might run with (TF32 on, deterministic mode warn-only), restored after."""
    import torch

    before = torch_settings()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    chosen = torch_settings()
    yield chosen
    torch.backends.cuda.matmul.allow_tf32 = before["matmul.allow_tf32"]
    torch.backends.cudnn.benchmark = before["cudnn.benchmark"]
    torch.use_deterministic_algorithms(before["deterministic_algorithms"],
                                       warn_only=before["deterministic_warn_only"])


def test_the_scope_sets_every_setting_and_restores_the_users_own(user_settings):
    with deterministic_torch():
        assert torch_settings() == PASS_SETTINGS
    assert torch_settings() == user_settings
    with pytest.raises(ValueError), deterministic_torch():
        raise ValueError("a pass that fails")
    assert torch_settings() == user_settings


def test_overlapping_passes_keep_the_settings_until_the_last_one_leaves(user_settings):
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def second():
        first_in.wait()
        with deterministic_torch():
            second_in.set()
            first_out.wait()
            seen["after the first left"] = torch_settings()
        seen["after both left"] = torch_settings()

    thread = threading.Thread(target=second)
    thread.start()
    with deterministic_torch():
        first_in.set()
        second_in.wait()
    first_out.set()
    thread.join()
    assert seen["after the first left"] == PASS_SETTINGS
    assert seen["after both left"] == user_settings == torch_settings()


def test_a_cpu_pass_changes_no_setting(user_settings):
    import torch

    with deterministic_passes(torch.device("cpu")):
        assert torch_settings() == user_settings


def test_an_operation_without_a_deterministic_kernel_is_recognised_by_its_error():
    """What makes an answer's pass fall back to CPU: torch's own refusal, here from a CPU op that
    has no deterministic kernel either; other errors are not taken for it."""
    import torch

    with pytest.raises(RuntimeError) as refused, deterministic_torch():
        torch.zeros(4).put_(torch.tensor([0, 0]), torch.tensor([1.0, 2.0]))
    assert is_nondeterministic_error(refused.value)
    with pytest.raises(RuntimeError) as other:
        torch.zeros(2) @ torch.zeros(3)
    assert not is_nondeterministic_error(other.value)


def test_the_command_line_sets_the_cublas_workspace_before_anything_else():
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    shown = subprocess.run([sys.executable, "-c", "import os, ledgerlm.cli; "
                            "print(os.environ['CUBLAS_WORKSPACE_CONFIG'])"],
                           env={**env, "PYTHONPATH": src}, capture_output=True, text=True, timeout=120)
    assert shown.stdout.strip() == CUBLAS_WORKSPACE, shown.stderr


@pytest.fixture(scope="module")
def attributor(trained, index):
    """The attributor as a node loads it (float64, from the model directory), with a gradient bar
    low enough that gradient evidence pays: the split then depends on the scores themselves."""
    attributor = load_attributor(trained.model_dir)  # loads the index `index` built and saved
    index = attributor.index
    attributor.index = replace(index, calibration=replace(
        index.calibration, gradient_bar={"cosine": 0.3, "trak_cosine": 0.3}))
    return attributor


def test_the_attributor_computes_in_float64(attributor):
    import torch

    assert {p.dtype for p in attributor.model.parameters()} == {torch.float64}


def test_a_gradient_paid_split_is_identical_bit_for_bit_with_one_and_two_threads(attributor):
    import torch

    runs = {}
    query = prepare_answer(attributor.tokenizer, QUESTION, ANSWER,
                           attributor.index.calibration.settings.restated_weight)
    for threads in (2, 1):
        torch.set_num_threads(threads)
        feature = answer_feature(attributor.model, attributor.index.projector, query.example,
                                 query.weights[0])
        runs[threads] = (feature.tobytes(), attributor.attribute(QUESTION, ANSWER).to_dict())
    assert torch.get_num_threads() == 1
    one, two = (np.frombuffer(runs[t][0]) for t in (1, 2))
    # The feature may differ in its last bits (the order of float64 sums), far below the rounding...
    assert np.abs(one - two).max() <= 1e-12 * np.abs(one).max()
    assert runs[1][1] == runs[2][1]  # ...so every example's scores and evidence, every bps agree
    assert any(e["gradient_evidence"] > 0 for e in runs[1][1]["examples"])  # scores decide the split
    assert runs[1][1]["evidence_bps"] > 0


def test_a_deterministic_pass_gives_the_same_split_as_a_plain_one(attributor):
    """Deterministic mode raises on any operation without a deterministic kernel: on CPU the whole
    pass runs under it, and nothing in it changes."""
    plain = attributor.attribute(SECRET["question"], SECRET["answer"])
    with deterministic_torch():
        checked = attributor.attribute(SECRET["question"], SECRET["answer"])
    assert checked == plain


def test_a_float32_pass_agrees_with_the_float64_one_within_rounding(trained, attributor):
    """The in-memory float32 model the index was built with is another order of sums: its scores
    may differ in the last rounded digit, which verification reports as rounding, never a mismatch."""
    single = attribute(trained.model, QUESTION, ANSWER, index=attributor.index)
    double = attributor.attribute(QUESTION, ANSWER)
    assert [d for d in compare(double.to_dict(), single.to_dict()) if not d.within_rounding] == []


@pytest.mark.gpu
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_cuda_twice_and_cpu_give_the_same_split(trained, attributor):
    on_cuda = load_attributor(trained.model_dir, device="cuda")
    on_cuda.index = attributor.index
    assert next(on_cuda.model.parameters()).device.type == "cuda"
    before = torch_settings()
    first = on_cuda.attribute(QUESTION, ANSWER).to_dict()
    again = on_cuda.attribute(QUESTION, ANSWER).to_dict()
    assert torch_settings() == before  # the pass's settings did not leak
    on_cpu = attributor.attribute(QUESTION, ANSWER).to_dict()
    assert first == again == on_cpu
    assert any(e["gradient_evidence"] > 0 for e in first["examples"])
    query = prepare_answer(trained.tokenizer, SECRET["question"], SECRET["answer"],
                           attributor.index.calibration.settings.restated_weight)
    features = [answer_feature(m, attributor.index.projector, query.example, query.weights[0])
                for m in (on_cuda.model, on_cuda.model)]
    assert features[0].tobytes() == features[1].tobytes()  # CUDA reruns: bit for bit


def test_one_answers_scores_do_not_depend_on_the_block_of_rows_they_are_computed_in(monkeypatch):
    """An answer's scores are computed a few cached rows at a time; at the fixed precision every
    bar and ranking uses they are those of one block over every row."""
    from ledgerlm.attribution import index as index_module
    from ledgerlm.attribution.calibration import rounded
    from ledgerlm.attribution.index import AttributionIndex, IndexConfig, damped_inverse_covariance

    rng = np.random.default_rng(0)
    features = rng.standard_normal((301, 512)).astype(np.float32)
    index = AttributionIndex([], features, damped_inverse_covariance(features, 0.1), None, None,
                             IndexConfig(dim=512, seed=0, damping=0.1, max_len=0))
    query = rng.standard_normal(512)
    scores = {}
    for rows in (1, 7, 32, 1000):  # blocks of 1, 7, 32 and all 301 rows
        monkeypatch.setattr(index_module, "_CACHED", 512 * rows)
        scores[rows] = {mode: index.gradient_scores(query, mode) for mode in ("cosine", "trak_cosine")}
    for mode in ("cosine", "trak_cosine"):
        whole = scores[1000][mode]
        for found in scores.values():
            assert np.abs(found[mode] - whole).max() < 1e-12
            assert np.array_equal(rounded(found[mode]), rounded(whole))
