"""The agent's tools over the Model Context Protocol: a stdio server any agent framework can drive."""

from __future__ import annotations

import json

import anyio

from ledgerlm.agents.tools import SPECS, call_tool
from ledgerlm.errors import LedgerError

OPTIONAL = {"max_tokens"}  # arguments a tool fills in itself when they are left out


def input_schema(name: str) -> dict:
    params = SPECS[name].params
    return {"type": "object", "properties": {k: {"type": t} for k, t in params.items()},
            "required": [k for k in params if k not in OPTIONAL], "additionalProperties": False}


def build_server(wallet):
    """An MCP server whose tools run on this agent's wallet: its policy, budget and audit trail apply."""
    import mcp_types as types
    from mcp.server.lowlevel import Server

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=s.name, description=s.description, input_schema=input_schema(s.name))
            for s in SPECS.values()])

    async def run_tool(ctx, params) -> types.CallToolResult:
        try:
            # the wallet speaks blocking HTTP; a worker thread keeps the protocol loop answering
            result = await anyio.to_thread.run_sync(call_tool, wallet, params.name, dict(params.arguments or {}))
        except LedgerError as exc:
            text = f"{exc.field}: {exc.message}" if exc.field else exc.message
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(result, default=str))],
                                    structured_content=json.loads(json.dumps(result, default=str)))

    return Server(f"ledgerlm-agent-{wallet.record.name}", on_list_tools=list_tools, on_call_tool=run_tool)


async def serve_stdio(wallet) -> None:
    from mcp.server.stdio import stdio_server

    server = build_server(wallet)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
