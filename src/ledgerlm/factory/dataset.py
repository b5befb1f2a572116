"""Turns Datanet records into packed, loss-masked token blocks for training and evaluation.

Record shapes (one per record, mixed freely):
  chat      {"messages": [{"role": ..., "content": ...}, ...]}    loss on assistant turns
  alpaca    {"instruction", "input"?, "output", "system"?}         loss on output
  qa        {"question", "answer", "context"?}                     loss on answer
  prompt    {"prompt", "completion"}                                loss on completion
  text      {"text"}                                                loss on every token
Instruction shapes go through the tokenizer's chat template, so training sees exactly the prompt
the model will be served with. Examples are packed best-fit-decreasing into blocks of `max_len`
tokens; position ids restart at every example, which makes transformers' attention block-diagonal,
so packed examples never see each other. Every token keeps the index of the record it came from
(`example_index`, -1 for padding) so per-example losses and gradients stay recoverable.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledgerlm.factory.errors import DatasetError

if TYPE_CHECKING:
    import torch

IGNORE = -100
MIN_MAX_LEN = 8
_ROLES = {"system", "user", "assistant"}
_SHAPES = "messages | instruction+output | question+answer | prompt+completion | text"

FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)


@dataclass(frozen=True)
class TokenizedExample:
    """One record (or one chunk of a long document) as token ids with per-token labels."""

    index: int
    kind: str
    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class Segment:
    """Where one example sits inside a packed block: tokens [start, end) belong to record `example`."""

    example: int
    start: int
    end: int


@dataclass(frozen=True)
class PackedBlock:
    """`max_len` tokens holding whole examples back to back, then padding."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    example_index: list[int]
    segments: tuple[Segment, ...]

    @property
    def n_tokens(self) -> int:
        return sum(s.end - s.start for s in self.segments)


@dataclass
class PackedBatch:
    """A stack of packed blocks as tensors, ready for the model."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    example_index: torch.Tensor
    segments: list[tuple[Segment, ...]]
    # Tokens every row's example begins with, left out of the rows: run once, not once per row.
    prefix_ids: torch.Tensor | None = None

    @property
    def n_tokens(self) -> int:
        """Tokens of the batch's examples, a shared prefix counted once for each example."""
        shared = 0 if self.prefix_ids is None else len(self.prefix_ids) * len(self.input_ids)
        return int((self.example_index >= 0).sum()) + shared

    @property
    def n_label_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())

    def to(self, device) -> PackedBatch:
        return PackedBatch(
            self.input_ids.to(device),
            self.labels.to(device),
            self.position_ids.to(device),
            self.example_index.to(device),
            self.segments,
            None if self.prefix_ids is None else self.prefix_ids.to(device),
        )


@dataclass(frozen=True)
class TrainingData:
    """The packed train and eval blocks of a record list, and what happened to each record."""

    train_blocks: list[PackedBlock]
    eval_blocks: list[PackedBlock]
    train_indices: list[int]
    eval_indices: list[int]
    kinds: dict[str, int]
    truncated: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    train_examples: list[TokenizedExample] = field(default_factory=list)
    pad_id: int = 0

    @property
    def n_train_tokens(self) -> int:
        return sum(b.n_tokens for b in self.train_blocks)


def record_kind(record: object, index: int = 0) -> str:
    """Which shape a record has, or a DatasetError naming the fields it does have."""
    if not isinstance(record, dict):
        raise DatasetError(
            f"record {index} is a {type(record).__name__}, expected an object with fields "
            f"{_SHAPES}",
            field=f"records[{index}]",
        )
    if "messages" in record:
        return "chat"
    if "instruction" in record and "output" in record:
        return "alpaca"
    if "question" in record and "answer" in record:
        return "qa"
    if "prompt" in record and "completion" in record:
        return "prompt"
    if "text" in record:
        return "text"
    found = ", ".join(sorted(map(str, record))) or "no fields"
    raise DatasetError(
        f"record {index} has an unknown shape (fields: {found}); expected one of {_SHAPES}",
        field=f"records[{index}]",
    )


def record_messages(record: dict, index: int = 0) -> list[dict[str, str]] | None:
    """The conversation an instruction record stands for; None for plain text records."""
    kind = record_kind(record, index)
    if kind == "text":
        return None
    if kind == "chat":
        return _checked_messages(record["messages"], index)
    if kind == "alpaca":
        user = _text(record, "instruction", index)
        extra = record.get("input")
        if extra not in (None, ""):
            user = f"{user}\n\n{_text(record, 'input', index)}"
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": _text(record, "output", index)}]
        if record.get("system"):
            messages.insert(0, {"role": "system", "content": _text(record, "system", index)})
        return messages
    if kind == "qa":
        user = _text(record, "question", index)
        if record.get("context"):
            user = f"{_text(record, 'context', index)}\n\n{user}"
        return [{"role": "user", "content": user},
                {"role": "assistant", "content": _text(record, "answer", index)}]
    return [{"role": "user", "content": _text(record, "prompt", index)},
            {"role": "assistant", "content": _text(record, "completion", index)}]


def usable_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(records an example can be made of, what was skipped and why): one contributor's record of a shape or
    content the trainer cannot read (an answer of blanks, a chat turn of another role) leaves the run, named by
    its contribution, instead of failing every job on the version."""
    kept, skipped = [], []
    for i, record in enumerate(records):
        try:
            if record_messages(record, i) is None:
                _text(record, "text", i)
        except DatasetError as exc:
            skipped.append({"contribution": record.get("_contribution_id") if isinstance(record, dict) else None,
                            "reason": exc.message})
        else:
            kept.append(record)
    return kept, skipped


def reference_pair(record: dict, index: int = 0) -> tuple[list[dict[str, str]], str] | None:
    """(prompt messages, reference answer) for scoring generations; None for plain text."""
    messages = record_messages(record, index)
    if messages is None:
        return None
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def ensure_chat_template(tokenizer) -> None:
    """Give a tokenizer without a chat template a plain "Role: content" one."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE


def tokenize_record(record: dict, index: int, tokenizer, max_len: int) -> list[TokenizedExample]:
    """One record as examples of at most `max_len` tokens; empty when nothing trainable fits.

    The first token of every example never carries a label: in a packed block its predecessor
    belongs to a different example.
    """
    return _tokenize(record, index, tokenizer, max_len)[0]


def split_indices(n: int, eval_split: float, seed: int) -> tuple[list[int], list[int]]:
    """A deterministic shuffle of range(n) cut into (train, eval); eval gets at least one when asked."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = round(n * eval_split)
    if eval_split > 0 and n >= 2:
        n_eval = min(max(n_eval, 1), n - 1)
    else:
        n_eval = 0
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def pack_examples(
    examples: list[TokenizedExample], max_len: int, pad_id: int, *, tight: bool = False
) -> list[PackedBlock]:
    """Best-fit-decreasing packing: each example goes whole into the fullest block it still fits.

    Blocks hold at most `max_len` tokens; `tight` pads them only to the fullest block's length
    instead of `max_len`, so a batch of short examples carries no columns of pure padding.
    """
    ordered = sorted(examples, key=lambda e: (-len(e.input_ids), e.index))
    contents: list[list[TokenizedExample]] = []
    free: list[tuple[int, int]] = []  # (free tokens, block number), kept sorted
    for example in ordered:
        size = len(example.input_ids)
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            room, block = free.pop(at)
        else:
            room, block = max_len, len(contents)
            contents.append([])
        contents[block].append(example)
        if room - size > 0:
            bisect.insort(free, (room - size, block))
    if tight and contents:
        max_len = max(sum(len(e.input_ids) for e in block) for block in contents)
    return [_assemble(block, max_len, pad_id) for block in contents]


def collate(blocks: list[PackedBlock]) -> PackedBatch:
    import torch

    return PackedBatch(
        input_ids=torch.tensor([b.input_ids for b in blocks], dtype=torch.long),
        labels=torch.tensor([b.labels for b in blocks], dtype=torch.long),
        position_ids=torch.tensor([b.position_ids for b in blocks], dtype=torch.long),
        example_index=torch.tensor([b.example_index for b in blocks], dtype=torch.long),
        segments=[b.segments for b in blocks],
    )


def shared_prefix_length(examples: list[TokenizedExample]) -> int:
    """How many leading tokens all `examples` share before the first one whose next token is labelled.

    The prefix stops short of that token so every labelled token is still predicted from a position
    inside its own example's row (see `share_prefix`).
    """
    first = examples[0].input_ids
    length = min(len(e.input_ids) for e in examples) - 1
    for example in examples:
        labelled = next(i for i, label in enumerate(example.labels) if label != IGNORE)
        length = min(length, labelled - 1)
        common = 0
        while common < length and example.input_ids[common] == first[common]:
            common += 1
        length = common
    return max(length, 0)


def share_prefix(examples: list[TokenizedExample], prefix_len: int, pad_id: int) -> PackedBatch:
    """A batch of one row per example holding what follows their common first `prefix_len` tokens.

    The model runs the prefix once and every row attends to its keys and values, so a chat
    template's system message and turn header cost one pass per batch instead of one per example.
    Rows are right-padded and their positions simply continue past the example: causal attention
    keeps padding out of the example's view, so no mask has to be built.
    """
    import torch

    width = max(len(e.input_ids) for e in examples) - prefix_len
    blocks = []
    for example in sorted(examples, key=lambda e: e.index):
        ids = example.input_ids[prefix_len:]
        pad = width - len(ids)
        blocks.append(PackedBlock(
            input_ids=ids + [pad_id] * pad,
            labels=example.labels[prefix_len:] + [IGNORE] * pad,
            position_ids=list(range(prefix_len, prefix_len + width)),
            example_index=[example.index] * len(ids) + [-1] * pad,
            segments=(Segment(example.index, 0, len(ids)),),
        ))
    batch = collate(blocks)
    batch.prefix_ids = torch.tensor(examples[0].input_ids[:prefix_len], dtype=torch.long)
    return batch


def build_training_data(
    records: list[dict], tokenizer, max_len: int, eval_split: float = 0.1, seed: int = 0
) -> TrainingData:
    """Split, tokenize and pack `records`; raises DatasetError when nothing trainable remains."""
    if not records:
        raise DatasetError("there are no records to train on: the dataset is empty", field="records")
    if max_len < MIN_MAX_LEN:
        raise DatasetError(
            f"max_len={max_len} is too small; use at least {MIN_MAX_LEN} tokens", field="max_len"
        )
    kinds = Counter(record_kind(r, i) for i, r in enumerate(records))
    ensure_chat_template(tokenizer)
    train_idx, eval_idx = split_indices(len(records), eval_split, seed)
    examples: dict[int, list[TokenizedExample]] = {}
    truncated, dropped = [], []
    for i, record in enumerate(records):
        pieces, was_cut = _tokenize(record, i, tokenizer, max_len)
        if not pieces:
            dropped.append(i)
        elif was_cut:
            truncated.append(i)
        examples[i] = pieces
    train = [e for i in train_idx for e in examples[i]]
    if not train:
        shortest = min(_prompt_length(r, i, tokenizer) for i, r in enumerate(records))
        raise DatasetError(
            f"max_len={max_len} is too small: no training record keeps an answer token "
            f"(the shortest prompt alone is {shortest} tokens)",
            field="max_len",
        )
    pad_id = _pad_id(tokenizer)
    return TrainingData(
        train_blocks=pack_examples(train, max_len, pad_id),
        eval_blocks=pack_examples([e for i in eval_idx for e in examples[i]], max_len, pad_id),
        train_indices=train_idx,
        eval_indices=eval_idx,
        kinds=dict(kinds),
        truncated=truncated,
        dropped=dropped,
        train_examples=train,
        pad_id=pad_id,
    )


def _assemble(examples: list[TokenizedExample], max_len: int, pad_id: int) -> PackedBlock:
    input_ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    owners: list[int] = []
    segments = []
    for example in sorted(examples, key=lambda e: e.index):
        start = len(input_ids)
        input_ids += example.input_ids
        labels += example.labels
        positions += range(len(example.input_ids))
        owners += [example.index] * len(example.input_ids)
        segments.append(Segment(example.index, start, len(input_ids)))
    pad = max_len - len(input_ids)
    # Padding continues the last example's positions: causal attention keeps it out of that
    # example's view, and a row of one example then needs no block-diagonal mask at all.
    after = positions[-1] + 1 if positions else 0
    return PackedBlock(
        input_ids=input_ids + [pad_id] * pad,
        labels=labels + [IGNORE] * pad,
        position_ids=positions + list(range(after, after + pad)),
        example_index=owners + [-1] * pad,
        segments=tuple(segments),
    )


def _tokenize(
    record: dict, index: int, tokenizer, max_len: int
) -> tuple[list[TokenizedExample], bool]:
    """The record's examples and whether an instruction record had to be cut at max_len."""
    messages = record_messages(record, index)
    if messages is None:
        return _tokenize_text(_text(record, "text", index), index, tokenizer, max_len), False
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in chat_segments(messages, tokenizer):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids += ids
        labels += ids if trained else [IGNORE] * len(ids)
    was_cut = len(input_ids) > max_len
    input_ids, labels = input_ids[:max_len], labels[:max_len]
    if labels:
        labels[0] = IGNORE
    if all(label == IGNORE for label in labels):
        return [], was_cut
    return [TokenizedExample(index, record_kind(record, index), input_ids, labels)], was_cut


def _tokenize_text(text: str, index: int, tokenizer, max_len: int) -> list[TokenizedExample]:
    ids = tokenizer(text)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    chunks = []
    for start in range(0, len(ids), max_len):
        piece = ids[start:start + max_len]
        if len(piece) >= 2:
            chunks.append(TokenizedExample(index, "text", piece, [IGNORE] + piece[1:]))
    return chunks


def chat_segments(messages: list[dict[str, str]], tokenizer) -> list[tuple[str, bool]]:
    """The rendered conversation cut into (text, trained) pieces: assistant turns are trained."""
    def render(msgs, generation_prompt):
        return tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=generation_prompt
        )

    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    segments: list[tuple[str, bool]] = []
    done = ""
    for turn in turns:
        prompt = render(messages[:turn], True)
        full = render(messages[:turn + 1], False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            # This template rewrites earlier turns (e.g. strips reasoning), so only the last
            # assistant turn can be cut out cleanly.
            prompt = render(messages[:turns[-1]], True)
            full = render(messages[:turns[-1] + 1], False)
            return [(prompt, False), (full[len(prompt):], True)]
        segments += [(prompt[len(done):], False), (full[len(prompt):], True)]
        done = full
    return segments


def _prompt_length(record: dict, index: int, tokenizer) -> int:
    pair = reference_pair(record, index)
    if pair is None:
        return 0
    text = tokenizer.apply_chat_template(pair[0], tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _checked_messages(messages: object, index: int) -> list[dict[str, str]]:
    where = f"records[{index}].messages"
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where} must be a non-empty list of {{role, content}}", field=where)
    checked = []
    for j, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise DatasetError(
                f"{where}[{j}] needs a role of system, user or assistant", field=f"{where}[{j}]"
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise DatasetError(f"{where}[{j}].content must be text", field=f"{where}[{j}]")
        checked.append({"role": message["role"], "content": content})
    if not any(m["role"] == "assistant" for m in checked):
        raise DatasetError(f"{where} has no assistant turn to learn from", field=where)
    return checked


def _text(record: dict, name: str, index: int) -> str:
    value = record.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(
            f"record {index} field {name!r} must be non-empty text", field=f"records[{index}].{name}"
        )
    return value


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0
