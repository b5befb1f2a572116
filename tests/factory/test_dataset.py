"""Dataset building: record shapes, loss masking, packing boundaries, splits and clear errors."""

from __future__ import annotations

import pytest

from ledgerlm.factory import IGNORE, DatasetError, build_training_data, record_kind, tokenize_record


def answer_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels, strict=True)
                             if label != IGNORE])


def test_qa_record_trains_only_on_the_answer(tokenizer):
    [example] = tokenize_record({"question": "What colour is crate 3?", "answer": "Amber."}, 0,
                                tokenizer, 128)
    assert answer_text(tokenizer, example) == "Amber.<|im_end|>\n"
    prompt = tokenizer.decode(example.input_ids[: example.labels.index(next(
        label for label in example.labels if label != IGNORE))])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "What colour is crate 3?" in prompt


def test_chat_record_trains_on_every_assistant_turn_and_nothing_else(tokenizer):
    record = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Blue."},
    ]}
    [example] = tokenize_record(record, 7, tokenizer, 256)
    assert example.index == 7
    assert answer_text(tokenizer, example) == "Red.<|im_end|>\nBlue.<|im_end|>\n"
    full = tokenizer.apply_chat_template(record["messages"], tokenize=False)
    assert tokenizer.decode(example.input_ids) == full


def test_alpaca_and_text_records(tokenizer):
    [alpaca] = tokenize_record(
        {"instruction": "Translate to French", "input": "red", "output": "rouge"}, 0, tokenizer, 128)
    assert answer_text(tokenizer, alpaca) == "rouge<|im_end|>\n"
    assert "Translate to French\n\nred" in tokenizer.decode(alpaca.input_ids)
    [text] = tokenize_record({"text": "Ledgers pay contributors."}, 1, tokenizer, 128)
    # Every token but the first is trained: in a packed block the first one has no predecessor.
    assert text.labels[0] == IGNORE and text.labels[1:] == text.input_ids[1:]


def test_long_document_is_chunked_and_keeps_its_record_index(tokenizer):
    document = {"text": " ".join(f"word{i}" for i in range(200))}
    chunks = tokenize_record(document, 5, tokenizer, 32)
    assert len(chunks) > 3
    assert all(c.index == 5 and len(c.input_ids) <= 32 for c in chunks)


def test_packing_keeps_every_example_whole_and_identifiable(tokenizer):
    records = [{"question": "q" * (1 + i % 9), "answer": "a " * (1 + (i * 7) % 13)} for i in range(60)]
    data = build_training_data(records, tokenizer, max_len=96, eval_split=0.0)
    seen = {}
    for block in data.train_blocks:
        assert len(block.input_ids) == len(block.labels) == len(block.example_index) == 96
        for seg in block.segments:
            [expected] = tokenize_record(records[seg.example], seg.example, tokenizer, 96)
            assert block.input_ids[seg.start:seg.end] == expected.input_ids
            assert block.labels[seg.start:seg.end] == expected.labels
            assert block.example_index[seg.start:seg.end] == [seg.example] * (seg.end - seg.start)
            assert block.position_ids[seg.start:seg.end] == list(range(seg.end - seg.start))
            seen[seg.example] = seen.get(seg.example, 0) + 1
        end = block.segments[-1].end
        assert all(i == -1 for i in block.example_index[end:])
        assert all(label == IGNORE for label in block.labels[end:])
    assert seen == {i: 1 for i in range(60)}
    real = sum(b.n_tokens for b in data.train_blocks)
    # Best-fit packing leaves little padding: under one block's worth over the minimum.
    assert len(data.train_blocks) * 96 - real < 96 + 96 * 0.1 * len(data.train_blocks)


def test_split_is_deterministic_and_disjoint(tokenizer, records):
    a = build_training_data(records, tokenizer, 64, eval_split=0.25, seed=3)
    b = build_training_data(records, tokenizer, 64, eval_split=0.25, seed=3)
    c = build_training_data(records, tokenizer, 64, eval_split=0.25, seed=4)
    assert a.eval_indices == b.eval_indices and a.eval_indices != c.eval_indices
    assert len(a.eval_indices) == 6
    assert sorted(a.train_indices + a.eval_indices) == list(range(len(records)))
    assert {s.example for blk in a.eval_blocks for s in blk.segments} == set(a.eval_indices)


def test_empty_records_are_rejected(tokenizer):
    with pytest.raises(DatasetError, match="empty") as err:
        build_training_data([], tokenizer, 64)
    assert err.value.field == "records"


def test_unknown_record_shape_names_the_fields_found(tokenizer):
    with pytest.raises(DatasetError, match=r"record 1 has an unknown shape \(fields: body, title\)"):
        build_training_data([{"text": "ok"}, {"title": "x", "body": "y"}], tokenizer, 64)
    assert record_kind({"question": "q", "answer": "a"}) == "qa"


def test_blank_answer_names_the_field(tokenizer):
    with pytest.raises(DatasetError) as err:
        build_training_data([{"question": "Why?", "answer": "  "}], tokenizer, 64)
    assert err.value.field == "records[0].answer"


def test_max_len_too_small_for_any_answer(tokenizer, records):
    with pytest.raises(DatasetError, match="max_len=10 is too small") as err:
        build_training_data(records, tokenizer, max_len=10, eval_split=0.0)
    assert err.value.field == "max_len"
