"""The engine on a tiny random Llama with random LoRA adapters: mixed-adapter batches decode exactly
like one-adapter runs and like PEFT, sampling is repeatable with a seed, stop strings and limits end
answers, and a broken adapter fails its request without poisoning the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ledgerlm.serving import AdapterLoadError, AdapterRef, SamplingParams  # noqa: E402
from ledgerlm.serving.engine import Engine, EngineSettings  # noqa: E402

GREEDY = SamplingParams(max_tokens=10, temperature=0.0)
PROMPTS = ["What colour is the sky?", "hi", "Ledgers record who contributed which data, and why it matters."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from ledgerlm.factory import tiny_random_model

    torch.set_num_threads(1)
    return tiny_random_model(tmp_path_factory.mktemp("engine") / "tiny")


def random_adapter(base: Path, out: Path, seed: int, rank: int, targets: list[str]) -> Path:
    """A PEFT adapter with non-zero A and B (PEFT starts B at zero, which would change nothing)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny, tmp_path_factory) -> list[AdapterRef]:
    root = tmp_path_factory.mktemp("adapters")
    return [
        AdapterRef("one", random_adapter(tiny, root / "one", 1, 4, ["q_proj", "v_proj"])),
        AdapterRef("two", random_adapter(tiny, root / "two", 2, 8, ["q_proj", "o_proj", "up_proj", "down_proj"])),
        AdapterRef("three", random_adapter(tiny, root / "three", 3, 2, ["k_proj", "gate_proj"])),
    ]


def load_engine(tiny: Path, **settings) -> Engine:
    from transformers import AutoModelForCausalLM

    from ledgerlm.factory import load_tokenizer
    from ledgerlm.factory.basemodels import BaseModel

    base = BaseModel(name="tiny", path=tiny, sha256="", n_params=0, source="test")
    return Engine(AutoModelForCausalLM.from_pretrained(tiny), load_tokenizer(base), EngineSettings(**settings))


@pytest.fixture(scope="module")
def engine(tiny):
    engine = load_engine(tiny, device_adapters=2, host_adapters=2)
    yield engine
    engine.close()


def prompt_ids(engine, text: str) -> list[int]:
    return engine.chat_ids([{"role": "user", "content": text}])


def test_a_mixed_adapter_batch_decodes_exactly_like_one_adapter_runs_and_like_peft(engine, adapters, tiny):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    choices = [None, *adapters]
    alone = {(p, a.model_id if a else None): engine.generate(prompt_ids(engine, p), a, GREEDY).token_ids
             for p in PROMPTS for a in choices}
    # all twelve at once: one batch mixing the base model and three adapters over two device slots
    queued = {(p, a.model_id if a else None): engine.submit(prompt_ids(engine, p), a, GREEDY)
              for p in PROMPTS for a in choices}
    together = {k: g.result(timeout=120).token_ids for k, g in queued.items()}
    assert together == alone
    assert len({tuple(v) for v in alone.values()}) > len(PROMPTS)  # the adapters do change the answers

    for adapter in adapters:
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), str(adapter.path)).eval()
        merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny),
                                           str(adapter.path)).merge_and_unload().eval()
        for p in PROMPTS:
            ids = torch.tensor([prompt_ids(engine, p)])
            for reference in (peft_model, merged):
                out = reference.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                                         do_sample=False, eos_token_id=sorted(engine.eos),
                                         pad_token_id=engine.tokenizer.pad_token_id)
                assert out[0, ids.shape[1]:].tolist() == alone[(p, adapter.model_id)]


def test_seeded_sampling_repeats_and_different_seeds_differ(engine, adapters):
    ids = prompt_ids(engine, PROMPTS[0])
    params = lambda seed: SamplingParams(max_tokens=12, temperature=1.5, top_p=0.95, seed=seed)  # noqa: E731
    first = engine.generate(ids, adapters[0], params(7)).token_ids
    assert engine.generate(ids, adapters[0], params(7)).token_ids == first
    assert any(engine.generate(ids, adapters[0], params(s)).token_ids != first for s in (8, 9, 10))


def test_a_vanishing_temperature_samples_the_best_token_instead_of_failing(engine):
    # 1e-40 once overflowed the scaled logits to inf and the softmax to NaN: the sampler raised and the
    # whole batch's calls failed with it
    ids = prompt_ids(engine, PROMPTS[1])
    greedy = engine.generate(ids, None, SamplingParams(max_tokens=8, temperature=0.0)).token_ids
    for temperature in (1e-40, 5e-324):
        answer = engine.generate(ids, None, SamplingParams(max_tokens=8, temperature=temperature, seed=1))
        assert answer.finish_reason != "error" and answer.token_ids == greedy


def test_max_tokens_and_stop_strings_end_the_answer(engine):
    ids = prompt_ids(engine, PROMPTS[1])
    full = engine.generate(ids, None, SamplingParams(max_tokens=12, temperature=0.0))
    assert full.finish_reason == "length" and full.completion_tokens == 12
    assert full.text
    stop = full.text[len(full.text) // 2:][:3]
    stopped = engine.generate(ids, None, SamplingParams(max_tokens=12, temperature=0.0, stop=(stop,)))
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text and full.text.startswith(stopped.text)
    assert stopped.completion_tokens < 12


def test_streamed_text_is_the_whole_answer(engine, adapters):
    generation = engine.submit(prompt_ids(engine, PROMPTS[2]), adapters[1], GREEDY)
    events = list(generation.events(timeout=60))
    assert events[-1].kind == "done" and events[-1].completion_tokens == 10
    pieces = "".join(e.text for e in events)
    assert pieces == engine.tokenizer.decode(generation.token_ids, skip_special_tokens=True)


def test_a_broken_adapter_fails_its_request_and_does_not_poison_the_cache(tiny, adapters, tmp_path):
    import shutil

    engine = load_engine(tiny, device_adapters=1, host_adapters=1)
    try:
        broken = tmp_path / "broken"
        shutil.copytree(adapters[0].path, broken)
        (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
        ref = AdapterRef("broken", broken)
        ids = prompt_ids(engine, PROMPTS[0])
        with pytest.raises(AdapterLoadError, match="broken.*cannot be read"):
            engine.generate(ids, ref, GREEDY)
        assert "broken" not in engine.adapters.host and "broken" not in engine.adapters.slots
        # the only slot is still usable, and the same name loads once its files are repaired
        assert engine.generate(ids, adapters[1], GREEDY).token_ids
        shutil.copy(adapters[0].path / "adapter_model.safetensors", broken / "adapter_model.safetensors")
        assert engine.generate(ids, ref, GREEDY).token_ids == engine.generate(ids, adapters[0], GREEDY).token_ids
    finally:
        engine.close()


def test_an_adapter_for_another_base_model_is_refused_with_the_reason(tiny, engine, tmp_path):
    from ledgerlm.factory import tiny_random_model

    other = tiny_random_model(tmp_path / "wide", hidden_size=96)
    ref = AdapterRef("wide", random_adapter(other, tmp_path / "wide-adapter", 4, 4, ["q_proj"]))
    with pytest.raises(AdapterLoadError, match="shape"):
        engine.generate(prompt_ids(engine, "hi"), ref, GREEDY)
    assert engine.generate(prompt_ids(engine, "hi"), None, GREEDY).token_ids


def test_a_prompt_longer_than_the_context_is_refused_naming_the_limit(tiny):
    engine = load_engine(tiny, context=32)
    try:
        from ledgerlm.serving import ServingError

        with pytest.raises(ServingError, match="context is 32 tokens"):
            engine.submit(list(range(5, 45)), None, GREEDY)
    finally:
        engine.close()


def test_a_request_that_fails_before_joining_the_batch_ends_and_frees_its_slot(tiny, adapters, monkeypatch):
    import ledgerlm.serving.engine as engine_module
    from ledgerlm.serving import ServingError

    engine = load_engine(tiny, device_adapters=1, host_adapters=1)
    try:
        ids = prompt_ids(engine, PROMPTS[0])

        def broken(seed):
            raise ValueError("no generator for this seed")

        monkeypatch.setattr(engine_module, "new_generator", broken)
        with pytest.raises(ServingError, match="generation failed"):
            engine.submit(ids, adapters[0], GREEDY).result(timeout=60)  # it once waited for ever
        monkeypatch.undo()
        assert not any(engine.adapters.pins.values())  # the one slot is free for the next adapter
        assert engine.generate(ids, adapters[1], GREEDY).token_ids
    finally:
        engine.close()


def test_hostile_sampling_settings_are_refused_naming_the_field():
    from ledgerlm.serving import ServingError
    from ledgerlm.serving.detokenize import TextStream
    from ledgerlm.serving.sampling import MAX_STOP_CHARS

    with pytest.raises(ServingError, match="at most 256 characters") as stop:
        SamplingParams(stop=("z" * (MAX_STOP_CHARS + 1),))
    assert stop.value.field == "stop"
    for seed in (2**64, -(2**63) - 1):
        with pytest.raises(ServingError, match="seed must be between") as bad:
            SamplingParams(seed=seed)
        assert bad.value.field == "seed"
    SamplingParams(seed=2**64 - 1, stop=("z" * MAX_STOP_CHARS,))

    class Letters:  # one character per token
        def decode(self, tokens, skip_special_tokens=True):
            return "".join(chr(97 + t % 26) for t in tokens)

    stream = TextStream(Letters(), ("ab" * 128,))
    assert stream.push(0) == ""  # "a" may begin the stop string: held back
    assert stream.push(25) == "az"


def test_a_prompt_too_long_for_any_tokenization_is_refused_before_tokenizing(engine):
    from ledgerlm.serving import ServingError

    longest = max(len(t) for t in engine.tokenizer.get_vocab())
    engine.check_prompt_text(["x" * (engine.context * longest)], "prompt")  # might still fit: the tokenizer decides
    with pytest.raises(ServingError, match="characters; this model's context is") as refused:
        engine.check_prompt_text(["hello " * (engine.context * longest // 6 + 1)], "messages")
    assert refused.value.field == "messages"
    with pytest.raises(ServingError, match=f"{engine.context} messages; this model's context is"):
        engine.check_prompt_text([""] * engine.context, "messages")  # empty messages still cost their template


def test_a_chat_template_that_refuses_the_conversation_is_a_400_naming_messages(engine, monkeypatch):
    """Some models' templates refuse turns that do not alternate (they call raise_exception): the caller is told
    why, naming `messages`, rather than answered with a bare 500."""
    from ledgerlm.serving import ServingError

    alternating = ("{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                   "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
                   "{% endif %}{{ m['role'] + ': ' + m['content'] }}{% endfor %}")
    monkeypatch.setattr(engine.tokenizer, "chat_template", alternating)
    assert engine.chat_ids([{"role": "user", "content": "hi"}])
    with pytest.raises(ServingError, match="roles must alternate") as refused:
        engine.chat_ids([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert refused.value.field == "messages" and refused.value.status == 400


@pytest.mark.parametrize("text, stop", [("好的。用户：你好", "用户："), ("Sure. Réponse: oui", "Réponse:"),
                                        ("a 😀😀 b", "😀😀"), ("Sure. Answer: yes", "Answer:")])
def test_a_stop_string_of_multi_byte_characters_never_leaks_its_start(engine, text, stop):
    """Driven token by token as the engine drives it: a byte-level tokenizer splits "：" or "é" over tokens, and
    the half-made character must not release the stop string's start held back before it."""
    from ledgerlm.serving.detokenize import TextStream

    stream = TextStream(engine.tokenizer, (stop,))
    sent = [stream.push(token) for token in engine.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not stream.stopped]
    assert stream.stopped and "".join(sent) + stream.flush() == text[:text.find(stop)]
