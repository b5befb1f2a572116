"""The MCP server lists the agent's tools and runs them under its policy, seen through the `mcp` client."""

from __future__ import annotations

import json
import os
import sys

import anyio
import pytest

from ledgerlm.agents import SPECS, AgentWallet
from ledgerlm.agents.mcp_server import build_server

from ..cli.conftest import PASSPHRASE, Cli, make_home

mcp = pytest.importorskip("mcp")


def test_tools_are_listed_and_run_under_the_agents_policy(world):
    world.create("mcp-agent", actions=["search", "call_model", "balance"])
    wallet = AgentWallet(world.client, world.registry, "mcp-agent", world.account("mcp-agent"))

    async def session():
        async with mcp.Client(build_server(wallet)) as client:
            tools = (await client.list_tools()).tools
            paid = await client.call_tool("call_model", {"model": "tiny", "prompt": "hi", "max_tokens": 4})
            refused = await client.call_tool("claim", {})
            return tools, paid, refused

    tools, paid, refused = anyio.run(session)
    assert {t.name for t in tools} == set(SPECS)
    assert next(t for t in tools if t.name == "call_model").input_schema["required"] == ["model", "prompt"]
    assert not paid.is_error and int(paid.structured_content["fee"]) > 0
    receipt = world.client.serving.receipt(paid.structured_content["receipt_id"])["receipt"]
    assert receipt["consumer"] == wallet.account.address
    assert refused.is_error and refused.content[0].text.startswith("actions: the policy does not allow 'claim'")
    assert [e.tool for e in wallet.audit.entries()][-2:] == ["call_model", "claim"]


def test_ledgerlm_mcp_serves_over_stdio(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("LEDGERLM_NODE", raising=False)
    home = make_home(tmp_path / "home")
    monkeypatch.setenv("LEDGERLM_HOME", str(home.root))
    cli = Cli(home, "in-process")
    cli("chain", "faucet", "alice", "--tokens", "10")
    address = cli.json("agent", "create", "remote", "--owner", "alice", "--budget", "2")["address"]
    server = mcp.StdioServerParameters(command=sys.executable, args=["-m", "ledgerlm", "mcp", "--agent", "remote"],
                                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})

    async def session():
        async with mcp.Client(server) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            return names, await client.call_tool("balance", {})

    names, balance = anyio.run(session)
    assert names == set(SPECS)
    shown = json.loads(balance.content[0].text)
    assert shown["chain"]["address"] == address and shown["chain"]["escrow"] == 2 * 10**18
