"""An agent's policy: what its owner lets it do, checked before every action and every spend."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, ValidationError, field_validator

from ledgerlm.agents.errors import AgentError, PolicyRefusal
from ledgerlm.units import format_amount

# Every tool an agent may be allowed; reads cost nothing but are still listed, so an owner can narrow them.
TOOLS = ("search", "call_model", "read_datanet", "contribute", "validate", "balance", "earnings", "claim",
         "buy_compute")

# The rules a refusal names (its `field`), on the client and on the node alike.
RULES = ("paused", "actions", "allow_models", "max_price", "allow_datanets", "budget")

# A policy names at most this many models and as many Datanets, each by a name of at most 128 characters: the
# node stores every policy signed by keys that cost nothing (model ids and Datanet names are far shorter).
MAX_ALLOWED = 256
AllowedName = Annotated[str, StringConstraints(min_length=1, max_length=128)]

# Tokens a chat template adds around the messages, on top of the prompt's own bytes (see worst_case_cost).
TEMPLATE_TOKENS = 64


class AgentPolicy(BaseModel):
    """Spending and permission rules; amounts are integers in base units."""

    budget: int = Field(gt=0, description="most the agent spends on calls (in total, or per epoch)")
    per_epoch: bool = False
    allow_models: list[AllowedName] = Field(default_factory=list, max_length=MAX_ALLOWED,
                                            description="empty: any model")
    allow_datanets: list[AllowedName] = Field(default_factory=list, max_length=MAX_ALLOWED,
                                              description="empty: any Datanet")
    max_price_per_1k: int | None = Field(default=None, ge=0, description="the dearest model price it may pay")
    actions: list[str] = Field(default_factory=lambda: list(TOOLS), max_length=2 * len(TOOLS))
    paused: bool = False

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, actions: list[str]) -> list[str]:
        unknown = sorted(set(actions) - set(TOOLS))
        if unknown:
            raise ValueError(f"unknown actions {', '.join(unknown)}; known: {', '.join(TOOLS)}")
        return actions

    def check_action(self, tool: str) -> None:
        if self.paused:
            raise PolicyRefusal("the agent is paused by its owner (`ledgerlm agent resume NAME` lets it act again)",
                                field="paused")
        if tool not in self.actions:
            raise PolicyRefusal(f"the policy does not allow {tool!r}; allowed: {', '.join(self.actions)}",
                                field="actions")

    def check_model(self, model: str, price_per_1k: int) -> None:
        if self.allow_models and model not in self.allow_models:
            raise PolicyRefusal(f"model {model!r} is not allowed; allowed: {', '.join(self.allow_models)}",
                                field="allow_models")
        if self.max_price_per_1k is not None and price_per_1k > self.max_price_per_1k:
            raise PolicyRefusal(f"model {model!r} costs {format_amount(price_per_1k)} LGR per 1k tokens, above "
                                f"the cap of {format_amount(self.max_price_per_1k)}", field="max_price")

    def check_datanet(self, datanet: str) -> None:
        if self.allow_datanets and datanet not in self.allow_datanets:
            raise PolicyRefusal(f"Datanet {datanet!r} is not allowed; allowed: {', '.join(self.allow_datanets)}",
                                field="allow_datanets")

    def check_spend(self, spent: int, worst_case: int) -> None:
        if spent + worst_case > self.budget:
            scope = "this epoch's" if self.per_epoch else "the"
            raise PolicyRefusal(f"this call may cost up to {format_amount(worst_case)} LGR; {format_amount(spent)} of "
                                f"{scope} budget of {format_amount(self.budget)} LGR is already spent",
                                field="budget")


def worst_case_cost(prompt: str, max_tokens: int, price_per_1k: int) -> int:
    """The most a call can be charged: byte-level tokenizers never make more tokens than UTF-8 bytes."""
    tokens = len(prompt.encode()) + TEMPLATE_TOKENS + int(max_tokens)
    return -(-tokens * price_per_1k // 1000)  # rounded up, so the estimate never undershoots


def parse_names(value: str | None) -> list[str]:
    """A comma-separated list from the command line: `a,b , c` -> [a, b, c]."""
    names = [v.strip() for v in (value or "").split(",") if v.strip()]
    if value and not names:
        raise AgentError(f"{value!r} names nothing; give a comma-separated list", field="allow")
    return names


def make_policy(**fields) -> AgentPolicy:
    """A policy from user input, or an AgentError naming the first field that is wrong and why."""
    try:
        return AgentPolicy(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AgentError(first["msg"].removeprefix("Value error, "), field=".".join(map(str, first["loc"]))) from None


def policy_message(policy: AgentPolicy) -> dict:
    """The fields of the owner's SetAgentPolicy signature for this policy (the agent and nonce come on top)."""
    return {"budget": policy.budget, "perEpoch": policy.per_epoch, "allowModels": list(policy.allow_models),
            "allowDatanets": list(policy.allow_datanets), "priceCapped": policy.max_price_per_1k is not None,
            "maxPricePer1k": policy.max_price_per_1k or 0, "actions": list(policy.actions), "paused": policy.paused}


def policy_from_message(message: dict) -> AgentPolicy:
    """The policy an owner signed, or an AgentError naming the field that is wrong."""
    return make_policy(budget=message["budget"], per_epoch=message["perEpoch"], allow_models=message["allowModels"],
                       allow_datanets=message["allowDatanets"],
                       max_price_per_1k=message["maxPricePer1k"] if message["priceCapped"] else None,
                       actions=message["actions"], paused=message["paused"])
