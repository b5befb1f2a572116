"""Agents as economic participants: their own keys, owner-set policies, guarded tools and an audit trail."""

from ledgerlm.agents.audit import AuditEntry, AuditLog
from ledgerlm.agents.enforcement import AgentPolicies, AgentStanding
from ledgerlm.agents.errors import AgentError, PolicyRefusal
from ledgerlm.agents.funding import FundingPlan, agent_key_name, change_policy, create_agent
from ledgerlm.agents.policy import (
    TOOLS,
    AgentPolicy,
    make_policy,
    parse_names,
    policy_from_message,
    policy_message,
    worst_case_cost,
)
from ledgerlm.agents.registry import AgentRecord, AgentRegistry
from ledgerlm.agents.runtime import Finish, RunResult, ScriptedDriver, ServedModelDriver, Step, ToolCall, run_task
from ledgerlm.agents.tools import SPECS, ToolSpec, call_tool
from ledgerlm.agents.wallet import AgentWallet

__all__ = [
    "SPECS", "TOOLS", "Finish", "RunResult", "ScriptedDriver", "ServedModelDriver", "Step", "ToolCall", "ToolSpec",
    "call_tool", "run_task", "AgentError", "AgentPolicies", "AgentStanding", "policy_from_message", "policy_message", "AgentPolicy", "AgentRecord", "AgentRegistry", "AgentWallet", "AuditEntry", "AuditLog",
    "FundingPlan", "change_policy", "PolicyRefusal", "agent_key_name", "create_agent", "make_policy", "parse_names",
    "worst_case_cost",
]
