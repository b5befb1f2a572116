"""Turning generated tokens into streamed text: stop strings end the answer, and a suffix that may
still become a stop string (or half of a multi-byte character) is held back until it cannot."""

from __future__ import annotations


class TextStream:
    """The answer so far, the part already sent, and whether a stop string ended it."""

    def __init__(self, tokenizer, stop: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.stop = stop
        self.tokens: list[int] = []
        self.text = ""
        self.sent = 0
        self.stopped = False

    def push(self, token: int) -> str:
        """Add a token; returns the text that is now safe to send."""
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.text, self.stopped = text[:min(hits)], True
            return self.flush()
        self.text = text
        # An incomplete UTF-8 sequence at the end decodes as U+FFFD: held until the next token completes it, and
        # what precedes it may still begin a stop string ("用户" before the half-made "：" of "用户：").
        whole = text.rstrip("\ufffd")
        hold = max((n for s in self.stop for n in range(min(len(s) - 1, len(whole)), 0, -1) if whole.endswith(s[:n])),
                   default=0)
        return self._send(len(whole) - hold)

    def flush(self) -> str:
        """Everything not yet sent (at the end of the answer)."""
        return self._send(len(self.text))

    def _send(self, end: int) -> str:
        if end <= self.sent:
            return ""
        delta, self.sent = self.text[self.sent:end], end
        return delta
