"""Training: loss falls, adapters reload with plain PEFT, resume/stop, and clear config errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ledgerlm.factory import (
    DatasetError,
    FactoryError,
    TrainConfig,
    TrainConfigError,
    check_training_setup,
    collate,
    token_losses,
    train,
)


def test_loss_goes_down_on_a_small_qa_set(tiny_base, records, fast_config, tmp_path):
    seen = []
    result = train(tiny_base, records, fast_config, tmp_path / "m", progress=seen.append)
    assert result.steps == result.total_steps == len(seen) > 4
    assert not result.stopped
    first, last = result.history[0].loss, result.history[-1].loss
    assert last < first - 0.5, (first, last)
    assert seen[-1].step == seen[-1].total_steps and seen[-1].eta_s == 0
    assert seen[0].tokens_per_s > 0 and seen[0].tokens_seen > 0
    saved = json.loads((tmp_path / "m" / "training.json").read_text())
    assert saved["config"]["target_modules"] == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert sorted(saved["train_indices"] + saved["eval_indices"]) == list(range(len(records)))


def test_saved_adapter_reloads_with_plain_peft_and_gives_identical_logits(
    tiny_base, records, fast_config, tmp_path
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train(tiny_base, records, replace(fast_config, epochs=1), tmp_path / "m")
    assert (tmp_path / "m" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "m" / "adapter_config.json").is_file()
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_base.path), str(tmp_path / "m")).eval()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250]])
    with torch.no_grad():
        expected = result.model(input_ids=ids).logits
        actual = reloaded(input_ids=ids).logits
        plain = reloaded.get_base_model()
        with reloaded.disable_adapter():
            untrained = plain(input_ids=ids).logits
    assert torch.equal(expected, actual)
    assert not torch.allclose(expected, untrained)


def test_packed_examples_score_as_if_alone(tiny_base, tokenizer, records, fast_config, tmp_path):
    import torch

    from ledgerlm.factory import pack_examples, tokenize_record

    result = train(tiny_base, records, replace(fast_config, epochs=1), tmp_path / "m")
    examples = [tokenize_record(records[i], i, tokenizer, 64)[0] for i in range(3)]
    packed = collate(pack_examples(examples, 256, tokenizer.pad_token_id))
    with torch.no_grad():
        together = token_losses(result.model, packed)
        alone = torch.cat([token_losses(result.model, collate(pack_examples([e], 64, 0)))
                           for e in sorted(examples, key=lambda e: e.index)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_stop_leaves_a_checkpoint_and_resume_finishes_like_an_unbroken_run(
    tiny_base, records, fast_config, tmp_path
):
    import torch
    from safetensors.torch import load_file

    config = replace(fast_config, dropout=0.1, epochs=2)
    unbroken = train(tiny_base, records, config, tmp_path / "unbroken")

    stopped = train(tiny_base, records, config, tmp_path / "split",
                    should_stop=lambda: True, checkpoint_every=100)
    assert stopped.stopped and stopped.steps == 1
    assert (tmp_path / "split" / "checkpoints" / "step-00000001" / "state.pt").is_file()
    assert not (tmp_path / "split" / "adapter_model.safetensors").exists()

    resumed = train(tiny_base, records, config, tmp_path / "split", resume=True)
    assert not resumed.stopped
    assert resumed.steps == unbroken.steps
    assert [r.step for r in resumed.history] == list(range(1, unbroken.steps + 1))
    a = load_file(str(tmp_path / "unbroken" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "split" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_refuses_other_settings(tiny_base, records, fast_config, tmp_path):
    train(tiny_base, records, fast_config, tmp_path / "m", should_stop=lambda: True)
    with pytest.raises(FactoryError, match="different training settings"):
        train(tiny_base, records, replace(fast_config, lr=1e-3), tmp_path / "m", resume=True)
    with pytest.raises(FactoryError, match="already holds a training run"):
        train(tiny_base, records, fast_config, tmp_path / "m")
    with pytest.raises(FactoryError, match="no checkpoint to resume"):
        train(tiny_base, records, fast_config, tmp_path / "fresh", resume=True)


def test_rank_zero_is_rejected_by_name(tiny_base, records, tmp_path):
    with pytest.raises(TrainConfigError, match="rank") as err:
        train(tiny_base, records, TrainConfig(rank=0), tmp_path / "m")
    assert err.value.field == "rank"
    assert not (tmp_path / "m").exists()


def test_missing_target_module_lists_the_available_ones(tiny_base):
    with pytest.raises(TrainConfigError) as err:
        check_training_setup(tiny_base, TrainConfig(target_modules=("q_proj", "query")))
    assert err.value.field == "target_modules"
    assert "'query' does not exist" in err.value.message
    assert "q_proj" in err.value.message.split("available linear modules:")[1]


def test_qlora_without_cuda_says_what_to_do(tiny_base, records, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TrainConfigError) as err:
        train(tiny_base, records, TrainConfig(method="qlora"), tmp_path / "m")
    assert err.value.field == "method"
    assert "CUDA" in err.value.message and "--method lora" in err.value.message


def test_empty_records_are_a_clear_error(tiny_base, tmp_path):
    with pytest.raises(DatasetError, match="empty"):
        train(tiny_base, [], TrainConfig(), tmp_path / "m")


def test_config_round_trips_and_hash_tracks_settings():
    config = TrainConfig(target_modules=("q_proj", "v_proj"), rank=16)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.sha256() != replace(config, rank=8).sha256()
    with pytest.raises(TrainConfigError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": "red"})


def test_a_shared_system_prompt_runs_once_per_batch_and_trains_as_if_repeated(
    tiny_base, tokenizer, records, fast_config, tmp_path
):
    from contextlib import nullcontext

    import torch

    from ledgerlm.factory import build_training_data, capture_lora_grads, example_losses
    from ledgerlm.factory.train import _adapted_for_training, step_batches

    system = "You keep the crate ledger of the harbour warehouse; answer in one sentence."
    records = [{"instruction": r["question"], "output": r["answer"], "system": system}
               for r in records[:8]]
    config = check_training_setup(
        tiny_base, replace(fast_config, batch_size=8, max_len=256, eval_split=0.0, epochs=2))
    data = build_training_data(records, tokenizer, config.max_len, 0.0, config.seed)
    [shared] = step_batches(data, config, 0, 0, share=True)
    [rows] = step_batches(data, config, 0, 0)
    assert rows.prefix_ids is None and system in tokenizer.decode(shared.prefix_ids)
    assert (shared.n_tokens, shared.n_label_tokens) == (rows.n_tokens, rows.n_label_tokens)
    assert len(shared.prefix_ids) + shared.input_ids.numel() < 0.6 * rows.input_ids.numel()

    model = _adapted_for_training(tiny_base, config, torch.device("cpu"))
    torch.manual_seed(1)
    for name, weight in model.named_parameters():
        if "lora_B" in name:  # zero at start, which would hide a gradient that misses the prefix
            torch.nn.init.normal_(weight, std=0.05)

    def losses_and_grads(batch):
        model.zero_grad()
        owners, losses = example_losses(model, batch)
        losses.sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        return owners, losses.detach(), grads

    a, b = losses_and_grads(shared), losses_and_grads(rows)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-5)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a[2], b[2], strict=True))

    # Whole runs: the prefix is shared except where per-example gradients are captured (here
    # the second epoch, as attribution does in the last one); the training is the same.
    def last_epoch_only(model, batch, epoch):
        return capture_lora_grads(model, batch.segments) if epoch == 1 else nullcontext()

    ends = []
    shared_run = train(tiny_base, records, config, tmp_path / "shared")
    mixed_run = train(tiny_base, records, config, tmp_path / "mixed", on_batch_end=ends.append,
                      capture_batch=last_epoch_only)
    assert [e.batch.prefix_ids is not None for e in ends] == [e.epoch == 0 for e in ends]
    assert all(e.capture.grads for e in ends if e.epoch == 1)
    assert shared_run.tokens_seen == mixed_run.tokens_seen
    assert ([round(r.loss, 4) for r in shared_run.history]
            == [round(r.loss, 4) for r in mixed_run.history])


def test_a_shared_prompt_prefix_runs_once_only_for_lora_on_cpu():
    """On a GPU a step is bound by kernel launches and the prefix's extra call doubles them;
    QLoRA's recomputing forward would fill the prefix cache twice."""
    import torch

    from ledgerlm.factory.train import shares_prefix

    assert shares_prefix(TrainConfig(), torch.device("cpu"))
    assert not shares_prefix(TrainConfig(), torch.device("cuda"))
    assert not shares_prefix(TrainConfig(method="qlora"), torch.device("cpu"))


def test_a_job_without_max_steps_may_not_run_past_the_step_bound(tiny_base, tmp_path, monkeypatch):
    """Without max_steps the data sets a job's length: one long text cut into max_len pieces made a job of
    millions of steps on the worker every developer shares. Past the bound it is refused naming max_steps."""
    import importlib

    monkeypatch.setattr(importlib.import_module("ledgerlm.factory.train"), "MAX_STEPS", 50)
    texts = [{"text": " ".join(f"word{i}" for i in range(400))}]
    with pytest.raises(TrainConfigError, match="steps; a job runs at most 50") as err:
        train(tiny_base, texts, TrainConfig(epochs=10, batch_size=1, max_len=16, eval_split=0.0), tmp_path / "m")
    assert err.value.field == "max_steps"
    result = train(tiny_base, texts, TrainConfig(epochs=10, batch_size=1, max_len=16, eval_split=0.0, max_steps=3),
                   tmp_path / "m2")
    assert result.steps == 3  # with max_steps the developer bounds it


def test_an_evaluation_prompt_is_cut_to_the_training_length(tiny_base, tokenizer):
    """A record's question is as long as its uploader made it: generated answers read its last max_len tokens."""
    from transformers import AutoModelForCausalLM

    from ledgerlm.factory.evaluate import generate_answers

    model = AutoModelForCausalLM.from_pretrained(tiny_base.path)
    widths, generate = [], model.generate

    def watched(**inputs):
        widths.append(inputs["input_ids"].shape[1])
        return generate(**inputs)

    model.generate = watched
    records = [{"question": "word " * 3000 + "What colour is the reef?", "answer": "copper"},
               {"question": "What colour is the gull?", "answer": "grey"}]
    found = generate_answers(model, tokenizer, records, [0, 1], max_new_tokens=4, max_prompt_tokens=32)
    assert widths == [32] and len(found) == 2
