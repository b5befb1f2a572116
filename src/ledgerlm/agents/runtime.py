"""The agent loop: a driver picks the next tool call, the wallet runs it under the policy, until done or a limit."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ledgerlm.agents.errors import AgentError, PolicyRefusal
from ledgerlm.agents.tools import SPECS, call_tool
from ledgerlm.errors import LedgerError

# Refusals that no later step can cure: the run stops instead of spending its remaining steps on them.
FINAL_REFUSALS = {"paused", "budget", "max_spend"}


@dataclass
class ToolCall:
    tool: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Finish:
    answer: str


@dataclass
class Step:
    tool: str
    args: dict[str, Any]
    ok: bool
    result: dict | None = None
    error: str | None = None
    field: str | None = None


@dataclass
class RunResult:
    agent: str
    task: str
    steps: list[Step]
    stopped: str  # finished | max_steps | refused | driver
    answer: str | None
    spent: int

    def to_dict(self) -> dict:
        return {**asdict(self), "spent": str(self.spent)}


class Driver(Protocol):
    def decide(self, task: str, history: list[Step]) -> ToolCall | Finish: ...


class ScriptedDriver:
    """Plays a fixed list of tool calls, then finishes: deterministic agents and tests."""

    def __init__(self, calls: list[ToolCall], answer: str = "done"):
        self.calls = list(calls)
        self.answer = answer

    @classmethod
    def from_json(cls, text: str) -> ScriptedDriver:
        try:
            items = json.loads(text)
            return cls([ToolCall(i["tool"], dict(i.get("args") or {})) for i in items])
        except (ValueError, TypeError, KeyError) as exc:
            raise AgentError(f"a script is a JSON list of {{\"tool\": NAME, \"args\": {{...}}}}: {exc}",
                             field="script") from None

    def decide(self, task: str, history: list[Step]) -> ToolCall | Finish:
        return self.calls[len(history)] if len(history) < len(self.calls) else Finish(self.answer)


class ServedModelDriver:
    """Asks one of the node's models for the next step with a tool-calling prompt; the agent pays for each ask."""

    def __init__(self, wallet, model: str, *, max_tokens: int = 96):
        self.wallet = wallet
        self.model = model
        self.max_tokens = max_tokens

    def prompt(self, task: str, history: list[Step]) -> str:
        tools = "\n".join(f"- {s.name}({', '.join(f'{k}: {t}' for k, t in s.params.items())}): {s.description}"
                          for s in SPECS.values())
        done = "\n".join(f"{s.tool}({json.dumps(s.args)}) -> {json.dumps(s.result if s.ok else s.error)[:400]}"
                         for s in history) or "nothing yet"
        return (f"You are an agent with a budget. Task: {task}\nTools:\n{tools}\nDone so far:\n{done}\n"
                'Reply with one JSON object: {"tool": NAME, "args": {...}} for the next step, '
                'or {"answer": TEXT} when the task is done.')

    def decide(self, task: str, history: list[Step]) -> ToolCall | Finish:
        reply = self.wallet.call_model(self.model, self.prompt(task, history), max_tokens=self.max_tokens)
        match = re.search(r"\{.*\}", reply["answer"], re.S)
        try:
            choice = json.loads(match.group(0)) if match else None
        except ValueError:
            choice = None
        if isinstance(choice, dict) and isinstance(choice.get("answer"), str):
            return Finish(choice["answer"])
        if isinstance(choice, dict) and isinstance(choice.get("tool"), str):
            return ToolCall(choice["tool"], dict(choice.get("args") or {}))
        raise AgentError(f"model {self.model!r} answered something that is not a tool call: "
                         f"{reply['answer'][:200]!r}", field="driver")


def run_task(wallet, task: str, driver: Driver, *, max_steps: int = 8, max_spend: int | None = None,
             files: Path | None = None) -> RunResult:
    """Run until the driver finishes, a step limit, or a refusal no later step can cure; `contribute` may upload
    only files inside the folder `files` (`tools.call_tool`)."""
    if max_steps < 1:
        raise AgentError("max_steps must be at least 1", field="max_steps")
    # what this run spends is the sum of its own receipts: a per-epoch total resets when an epoch closes mid-run
    wallet.run_spent = 0
    wallet.spend_limit = None if max_spend is None else int(max_spend)
    steps: list[Step] = []
    stopped, answer = "max_steps", None
    try:
        while len(steps) < max_steps:
            try:
                decision = driver.decide(task, steps)
            except LedgerError as exc:
                steps.append(Step("decide", {}, False, error=exc.message, field=exc.field))
                stopped = "refused" if exc.field in FINAL_REFUSALS else "driver"
                break
            if isinstance(decision, Finish):
                stopped, answer = "finished", decision.answer
                break
            try:
                steps.append(Step(decision.tool, decision.args, True,
                                  result=call_tool(wallet, decision.tool, decision.args, files=files)))
            except LedgerError as exc:
                steps.append(Step(decision.tool, decision.args, False, error=exc.message, field=exc.field))
                if isinstance(exc, PolicyRefusal) and exc.field in FINAL_REFUSALS:
                    stopped = "refused"
                    break
    finally:
        wallet.spend_limit = None
    return RunResult(wallet.record.name, task, steps, stopped, answer, wallet.run_spent)
