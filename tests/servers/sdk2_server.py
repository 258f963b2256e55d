#!/usr/bin/env python3
"""The era test server's tools on the official Python SDK 2.x (`MCPServer`), which serves both
protocol eras: 2026-07-28 requests statelessly (input_required for the client's input), and
`initialize` sessions of the earlier revisions (server requests mid-call).

Tools: echo {text}, ask (elicits a name), sample (samples the client's model), roots (lists the
client's roots), slow (progress), change (tools/list_changed and an update of test://watched).
Runs on stdio, or with --port N over Streamable HTTP at http://127.0.0.1:N/mcp.
"""

import argparse
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, ListRoots, Resolve, Sample
from mcp_types import CreateMessageResult, ListRootsResult, SamplingMessage, TextContent
from pydantic import BaseModel

WATCHED = "test://watched"
server = MCPServer("era-sdk2-server", version="2.0.0")


class Name(BaseModel):
    name: str


def ask_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


def ask_model() -> Sample:
    question = SamplingMessage(role="user", content=TextContent(type="text", text="What is the capital of France?"))
    return Sample([question], max_tokens=50)


def ask_roots() -> ListRoots:
    return ListRoots()


@server.tool()
def echo(text: str) -> str:
    """Echo text."""
    return text


@server.tool()
def ask(who: Annotated[Name, Resolve(ask_name)]) -> str:
    """Ask the user for a name."""
    return f"hello {who.name}"


@server.tool()
def sample(said: Annotated[CreateMessageResult, Resolve(ask_model)]) -> str:
    """Ask the client's model."""
    text = said.content.text if isinstance(said.content, TextContent) else "?"
    return f"model said: {text}"


@server.tool()
def roots(listed: Annotated[ListRootsResult, Resolve(ask_roots)]) -> str:
    """List the client's roots."""
    return "roots: " + ",".join(str(r.uri) for r in listed.roots)


@server.tool()
async def slow(ctx: Context) -> str:
    """Report progress three times."""
    for i in range(1, 4):
        await ctx.report_progress(i, 3)
    return "done"


@server.tool()
async def change(ctx: Context) -> str:
    """Change the tool list and the watched resource."""
    await ctx.notify_tools_changed()
    await ctx.notify_resource_updated(WATCHED)
    return "changed"


@server.resource(WATCHED)
def watched() -> str:
    """A resource that `change` updates."""
    return "watched content"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, help="serve Streamable HTTP on this port instead of stdio")
    args = parser.parse_args()
    if args.port:
        server.run("streamable-http", host="127.0.0.1", port=args.port)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
