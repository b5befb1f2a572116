"""`run_task`: scripted and model-driven loops, their step and spend limits, the kill switch mid-run."""

from __future__ import annotations

import pytest

from ledgerlm.agents import AgentWallet, Finish, ScriptedDriver, ServedModelDriver, ToolCall, run_task
from ledgerlm.agents.policy import worst_case_cost

from .conftest import PRICE


def _wallet(world, name: str, **policy) -> AgentWallet:
    world.create(name, **policy)
    return AgentWallet(world.client, world.registry, name, world.account(name))


def _fees(world, address: str) -> int:
    return sum(int(r["fee"]) for r in world.client.serving.receipts(account=address, limit=1000)
               if r["consumer"] == address)


def test_a_scripted_run_uses_tools_pays_for_calls_and_reports_bad_steps(world):
    wallet = _wallet(world, "scripted")
    script = ScriptedDriver([ToolCall("search"), ToolCall("call_model", {"model": "tiny", "prompt": "hi", "max_tokens": 4}),
                             ToolCall("teleport"), ToolCall("balance")], answer="all done")
    result = run_task(wallet, "look around", script, max_steps=10)
    assert result.stopped == "finished" and result.answer == "all done"
    assert [s.ok for s in result.steps] == [True, True, False, True]
    assert result.steps[0].result["models"][0]["id"] == "tiny"
    assert result.steps[2].field == "tool"
    assert result.spent == _fees(world, wallet.account.address) > 0
    assert int(result.steps[3].result["spent"]) == result.spent


def test_step_and_spend_limits_stop_a_run(world):
    wallet = _wallet(world, "limited")
    ask = ToolCall("call_model", {"model": "tiny", "prompt": "hi", "max_tokens": 4})
    assert run_task(wallet, "t", ScriptedDriver([ToolCall("balance")] * 5), max_steps=2).stopped == "max_steps"
    capped = run_task(wallet, "t", ScriptedDriver([ask, ask]), max_spend=1)
    assert capped.stopped == "refused" and capped.steps[-1].field == "max_spend" and capped.spent == 0
    assert _fees(world, wallet.account.address) == 0


def test_pausing_mid_run_refuses_the_next_action(world):
    wallet = _wallet(world, "pausable")

    class PauseAfterFirst:
        def decide(self, task, history):
            if len(history) == 1:
                world.pause("pausable")  # the owner's kill switch, while the agent runs
            return ToolCall("call_model", {"model": "tiny", "prompt": "hi", "max_tokens": 4}) if len(history) < 3 \
                else Finish("unreachable")

    result = run_task(wallet, "t", PauseAfterFirst())
    assert result.stopped == "refused" and [s.ok for s in result.steps] == [True, False]
    assert result.steps[-1].field == "paused"
    assert len([r for r in world.client.serving.receipts(account=wallet.account.address, limit=100)
                if r["consumer"] == wallet.account.address]) == 1


def test_a_model_driven_run_pays_for_each_decision_and_stops_on_a_reply_that_is_no_tool_call(world):
    wallet = _wallet(world, "driven", budget=10**16)  # the tool-calling prompt is long: its worst case is dear
    result = run_task(wallet, "find the cheapest model", ServedModelDriver(wallet, "tiny", max_tokens=8))
    assert result.stopped == "driver" and result.steps[-1].field == "driver"  # a random model emits no JSON
    decided = [e for e in wallet.audit.entries() if e.tool == "call_model"]
    assert len(decided) == 1 and decided[0].ok and "Tools:" in decided[0].args["prompt"]
    assert result.spent == decided[0].cost > 0


def test_a_run_uploads_only_files_inside_the_folder_it_was_given(world, tmp_path):
    """A driver's arguments may come from a model's answer, which a prompt injection can write."""
    wallet = _wallet(world, "uploader")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "facts.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (tmp_path / "private-notes.txt").write_text("not for the Datanet")
    steal = [ToolCall("contribute", {"datanet": "colours", "paths": [p]})
             for p in ("../private-notes.txt", str(tmp_path / "private-notes.txt"), "missing.jsonl")]
    unconfined = run_task(wallet, "t", ScriptedDriver(steal[:1]))
    assert unconfined.steps[0].field == "paths" and "names no folder" in unconfined.steps[0].error
    confined = run_task(wallet, "t", ScriptedDriver(steal), max_steps=3, files=tmp_path / "mine")
    assert [(s.ok, s.field) for s in confined.steps] == [(False, "paths")] * 3


def test_a_confined_upload_reads_the_file_inside_the_folder_not_one_of_the_same_name_elsewhere(tmp_path,
                                                                                            monkeypatch):
    from ledgerlm.agents.tools import call_tool

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "facts.txt").write_text("inside")
    (tmp_path / "facts.txt").write_text("outside")
    monkeypatch.chdir(tmp_path)  # a path relative to the working folder would name the outside file
    (tmp_path / "mine" / "link.txt").symlink_to(tmp_path / "facts.txt")
    sent = []

    class Wallet:
        def contribute(self, datanet, paths):
            sent.append([open(p).read() for p in paths])
            return {}

    call_tool(Wallet(), "contribute", {"datanet": "d", "paths": ["facts.txt"]}, files=tmp_path / "mine")
    assert sent == [["inside"]]
    from ledgerlm.agents.errors import AgentError

    with pytest.raises(AgentError) as refused:  # a link out of the folder is outside it
        call_tool(Wallet(), "contribute", {"datanet": "d", "paths": ["link.txt"]}, files=tmp_path / "mine")
    assert refused.value.field == "paths"


@pytest.mark.parametrize("tool, args, field", [
    ("read_datanet", {"datanet": "allowed", "version": "1/../../../forbidden/versions/1"}, "version"),
    ("reveal_votes", {"round_id": "1/../7"}, "round_id"),
    ("call_model", {"model": "tiny", "prompt": "hi", "max_tokens": "lots"}, "max_tokens"),
    ("call_model", {"model": "tiny", "prompt": 5, "max_tokens": 4}, "prompt"),
    ("call_model", {"model": "tiny", "prompt": "hi", "max_tokens": True}, "max_tokens"),
    ("commit_votes", {"round_id": 1, "scores": {"x": 5}}, "scores"),
])
def test_a_tool_argument_of_the_wrong_json_type_is_refused_by_name_before_the_wallet_runs(tool, args, field):
    """A served model's answer (which a prompt injection can write) chooses the arguments: a "number" that is a
    path reached another Datanet's URL past the allow list, and a wrong type ended the whole run."""
    from ledgerlm.agents.errors import AgentError
    from ledgerlm.agents.tools import call_tool

    class Wallet:
        def __getattr__(self, name):
            raise AssertionError(f"the wallet's {name} ran")

    with pytest.raises(AgentError) as refused:
        call_tool(Wallet(), tool, args)
    assert refused.value.field == field


def test_the_audit_log_is_readable_by_its_owner_only(tmp_path):
    """It keeps every tool's arguments and results: prompts, answers, and validation tasks (private data)."""
    from ledgerlm.agents import AuditLog
    from ledgerlm.agents.audit import AuditEntry

    log = AuditLog(tmp_path / "agents" / "a1.audit.jsonl")
    log.append(AuditEntry.model_validate({"at": 1, "agent": "a1", "tool": "balance", "args": {}, "ok": True}))
    assert (log.path.stat().st_mode & 0o777) == 0o600 and len(log.entries()) == 1


def test_a_runs_spend_limit_holds_when_an_epoch_closes_mid_run(world):
    """A per-epoch budget's spend resets when an epoch closes: the run's limit, measured as that total's change,
    let a run that had spent in the epoch before it spend 1.7 times its limit."""
    wallet = _wallet(world, "across-epochs", per_epoch=True, budget=10**16)
    ask = ToolCall("call_model", {"model": "tiny", "prompt": "hi", "max_tokens": 4})
    earlier = run_task(wallet, "t", ScriptedDriver([ask] * 4))
    fee = earlier.spent // 4
    assert earlier.stopped != "refused" and fee > 0

    class CloseAfterFirst:
        def decide(self, task, history):
            if len(history) == 1:
                world.node.economy.close()  # the node settles the epoch while the agent runs
            return ask if len(history) < 8 else Finish("unreachable")

    before = _fees(world, wallet.account.address)
    limit = worst_case_cost("hi", 4, PRICE) + fee  # room for two calls, each checked at its worst case
    result = run_task(wallet, "t", CloseAfterFirst(), max_spend=limit)
    assert result.stopped == "refused" and result.steps[-1].field == "max_spend" and len(result.steps) == 3
    assert result.spent == _fees(world, wallet.account.address) - before <= limit
