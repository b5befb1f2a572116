"""The agents room's errors: a refused action names the policy rule and the field it checks."""

from __future__ import annotations

from ledgerlm.errors import LedgerError


class AgentError(LedgerError):
    """Anything wrong with an agent: unknown name, bad policy, a failed funding step."""


class PolicyRefusal(AgentError):
    """The agent's policy refused an action before anything was spent or signed."""

    status = 403
