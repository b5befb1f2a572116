"""OpenAI-compatible request bodies for /v1/chat/completions and /v1/completions (fields we do not
act on, such as penalties or `user`, are accepted and ignored, as other compatible servers do; fields that
would change what a right answer is, such as tools or a JSON response format, are refused rather than
ignored, so nobody pays for an answer that disregarded them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        """The message's text; content parts other than text are refused."""
        if isinstance(self.content, list):
            parts = []
            for part in self.content:
                if part.get("type") != "text":
                    raise ValueError(f"content parts of type {part.get('type')!r} are not supported; send text")
                text = part.get("text", "")
                if not isinstance(text, str):
                    raise ValueError(f"a text part's text must be a string, got {type(text).__name__}")
                parts.append(text)
            return "".join(parts)
        return self.content or ""


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    # strict: `true` or "5" is not a count (pydantic would read them as 1 and 5)
    n: int = Field(default=1, strict=True)
    stream: bool = False
    stream_options: dict[str, Any] | None = None  # {"include_usage": true}: a last chunk with the usage alone
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, strict=True)

    # Constraints on the answer this node cannot honour: refused, never silently dropped.
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    logit_bias: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value):
        if value:
            raise ValueError("tool and function calling are not supported (this node runs no tools); send the "
                             "request without tools")
        return value

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, value):
        if value not in (None, "none", "auto"):
            raise ValueError("tool and function calling are not supported (this node runs no tools); leave it "
                             "out or send \"none\"")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value):
        if value:
            raise ValueError("logit_bias is not supported; leave it out")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value):
        if value and value.get("type", "text") != "text":
            raise ValueError(f"response_format {value.get('type')!r} is not supported; only \"text\"")
        return value

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value, info: ValidationInfo):
        if value is not None and not info.data.get("stream"):  # as OpenAI answers it: nothing would read them
            raise ValueError("stream_options is only allowed with stream: true")
        return value

    def usage_chunk(self) -> bool:
        """Whether a stream ends with OpenAI's usage-only chunk (`choices: []`) after the finishing one."""
        return bool(self.stream and self.stream_options and self.stream_options.get("include_usage"))

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


# Every turn takes tokens of the chat template, so no context holds more turns than this; the bound
# stops a body of a hundred thousand empty turns while it is read, not after each is validated.
MAX_MESSAGES = 8192


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(default=None, ge=1, strict=True)
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value):
        if value:  # asked for and answered `null`, a client reading `choices[0].logprobs.content` breaks
            raise ValueError("logprobs are not supported; leave them out")
        return value

    def plain_messages(self) -> list[dict]:
        """The conversation as the engine renders it and attribution reads it; one attribution could not read (it
        cuts the conversation before each assistant turn, as training does) is refused before it is served."""
        plain = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]
        if any(m["role"] == "tool" for m in plain):
            raise ValueError("tool messages are not supported (this node runs no tools): send system, developer, "
                             "user and assistant messages")
        if plain[0]["role"] == "assistant":
            raise ValueError("the conversation must not open with an assistant message: start it with a system, "
                             "developer or user message")
        return plain


# What /v1/completions offers that this node cannot do: each field, what of it passes, and why the rest is refused.
_COMPLETION_ONLY = {
    "echo": (lambda v: not v, "echo is not supported"),
    "logprobs": (lambda v: v is None, "logprobs are not supported"),
    "suffix": (lambda v: not v, "suffix (text after the completion) is not supported; leave it out"),
    "best_of": (lambda v: v in (None, 1), "only best_of=1 is supported"),
}


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    best_of: int | None = None

    @field_validator(*_COMPLETION_ONLY)
    @classmethod
    def _supported(cls, value, info):
        allowed, message = _COMPLETION_ONLY[info.field_name]
        if not allowed(value):
            raise ValueError(message)
        return value

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("send exactly one prompt per request")
            return value[0]
        return value
