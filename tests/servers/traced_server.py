#!/usr/bin/env python3
"""An MCP server (official Python SDK, low-level server, stdio) that reports the trace
context it receives, for the tracing end-to-end tests.

Tools:
  traced         -> JSON {"traceparent": ..., "tracestate": ...} read from the request's
                    params._meta (null when absent)
  echo {message} -> the message
"""

import json

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

server = Server("traced-test-server", version="1.0.0")


@server.list_tools()
async def list_tools():
    return [
        types.Tool(name="traced", description="Reports the trace context in _meta",
                   inputSchema={"type": "object"}),
        types.Tool(name="echo", description="Echo a message",
                   inputSchema={"type": "object", "properties": {"message": {"type": "string"}},
                                "required": ["message"]}),
    ]


@server.call_tool()
async def call_tool(name: str, arguments: dict):
    if name == "echo":
        return [types.TextContent(type="text", text=str(arguments.get("message", "")))]
    if name == "traced":
        # RequestParams.Meta allows extra fields: traceparent/tracestate land in model_extra.
        meta = server.request_context.meta
        extra = (meta.model_extra or {}) if meta is not None else {}
        ctx = {"traceparent": extra.get("traceparent"), "tracestate": extra.get("tracestate")}
        return [types.TextContent(type="text", text=json.dumps(ctx))]
    raise ValueError(f"unknown tool {name}")


async def main():
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
