"""The tools an agent can call, by name: what each does, its arguments, and which wallet method runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledgerlm.agents.errors import AgentError


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    params: dict[str, str] = field(default_factory=dict)  # argument -> JSON type, for prompts and MCP schemas


SPECS = {s.name: s for s in (
    ToolSpec("search", "list served models (price per 1k tokens, eval metrics) and readable Datanets"),
    ToolSpec("call_model", "ask a served model; paid from the agent's budget",
             {"model": "string", "prompt": "string", "max_tokens": "integer"}),
    ToolSpec("read_datanet", "a published Datanet version's manifest", {"datanet": "string", "version": "integer"}),
    ToolSpec("contribute", "upload files to a Datanet, signed by the agent", {"datanet": "string", "paths": "array"}),
    ToolSpec("validation_tasks", "contributions assigned to the agent for scoring, with gate findings"),
    ToolSpec("commit_votes", "commit scores (0-100) per contribution id in a round",
             {"round_id": "integer", "scores": "object"}),
    ToolSpec("reveal_votes", "reveal the scores committed in a round", {"round_id": "integer"}),
    ToolSpec("balance", "the agent's tokens, stake, escrow and remaining budget"),
    ToolSpec("earnings", "what the agent earned per epoch and what is unclaimed"),
    ToolSpec("claim", "claim every claimable epoch's payout"),
)}


def call_tool(wallet, name: str, args: dict[str, Any], *, files: Path | None = None) -> dict:
    """Run one tool on the wallet with JSON arguments, refusing unknown tools and arguments by name. `contribute`
    reads local files: only those inside the folder `files` (none without it), since the arguments come from
    whatever drives the agent — a served model's answer included, which a prompt injection can write."""
    spec = SPECS.get(name)
    if spec is None:
        raise AgentError(f"unknown tool {name!r}; tools: {', '.join(SPECS)}", field="tool")
    unknown = sorted(set(args) - set(spec.params))
    if unknown:
        raise AgentError(f"tool {name!r} takes no argument {', '.join(unknown)}; it takes: "
                         f"{', '.join(spec.params) or 'nothing'}", field="args")
    for arg, value in args.items():  # a number that is a path ("1/../../other") reaches no URL
        if not _JSON_TYPES[spec.params[arg]](value):
            raise AgentError(f"tool {name!r}: {arg} must be a JSON {spec.params[arg]}, not {str(value)[:100]!r}",
                             field=arg)
    if name == "contribute":  # the files read are those checked: inside the folder, named from it
        args = {**args, "paths": _inside(files, args.get("paths"))}
    if name == "commit_votes":
        try:
            args = {**args, "scores": {int(k): int(v) for k, v in dict(args.get("scores") or {}).items()}}
        except (TypeError, ValueError):
            raise AgentError(f"tool {name!r}: scores must map contribution ids to whole numbers 0-100",
                             field="scores") from None
    try:
        return getattr(wallet, name)(**args)
    except TypeError as exc:  # a missing argument
        raise AgentError(f"tool {name!r}: {exc}", field="args") from None


_JSON_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _inside(files: Path | None, paths) -> list[str]:
    """The paths, each resolved inside the folder `files`, or AgentError naming `paths`."""
    if files is None:
        raise AgentError("contribute reads local files, and this run names no folder it may read them from "
                         "(`agent run --files DIR`)", field="paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise AgentError("paths must be a list of file names", field="paths")
    root = Path(files).resolve()
    inside = []
    for path in paths:
        resolved = (root / path).resolve()  # symbolic links followed: where the bytes really are
        if not resolved.is_relative_to(root) or not resolved.is_file():
            raise AgentError(f"{path!r} is not a file inside the run's folder {root}", field="paths")
        inside.append(str(resolved))
    return inside
