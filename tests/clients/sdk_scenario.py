#!/usr/bin/env python3
"""Drive @modelcontextprotocol/server-everything through the official Python MCP SDK.

The server is reached however the test set it up: over Streamable HTTP (--url .../mcp),
HTTP+SSE (--url .../sse --transport sse) or by starting a command on stdio (--stdio CMD...).
Every feature a user relies on is exercised and checked; with --clients 2 two sessions run
side by side, each with its own sampling answer, elicitation answer and roots, so that a
server request delivered to the wrong client shows up as a failure.

Prints one line per check and exits non-zero if any check failed.
"""

import argparse
import asyncio
import sys
from contextlib import asynccontextmanager
from datetime import timedelta

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

TIMEOUT = timedelta(seconds=30)

# With one stdio server shared by every client, nothing on the wire says which call a server
# request belongs to; the proxy routes it to the client with the latest call in flight. Such
# calls are then made one client at a time (--take-turns); with --per-client they need not be.
TURNS = asyncio.Lock()
TAKE_TURNS = False
# Behind a merged view, tool and prompt names carry the server's prefix (`everything--`).
P = ""


@asynccontextmanager
async def turn():
    if TAKE_TURNS:
        async with TURNS:
            yield
    else:
        yield


class Client:
    """One client session, with answers of its own to the server's requests."""

    def __init__(self, tag: str):
        self.tag = tag
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.updates: list[str] = []
        self.sampled = 0

    async def sampling(self, context, params: types.CreateMessageRequestParams):
        self.sampled += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"reply-from-{self.tag}"),
            model="test-model",
            stopReason="endTurn",
        )

    async def elicitation(self, context, params):
        return types.ElicitResult(action="accept", content={"name": f"user-{self.tag}"})

    async def roots(self, context):
        return types.ListRootsResult(roots=[types.Root(uri=f"file:///roots/{self.tag}", name=self.tag)])

    async def logging(self, params: types.LoggingMessageNotificationParams):
        self.logs.append(params)

    async def messages(self, message):
        if isinstance(message, types.ServerNotification):
            root = message.root
            if isinstance(root, types.ResourceUpdatedNotification):
                self.updates.append(str(root.params.uri))


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def wait_for(predicate, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def scenario(session: ClientSession, c: Client, report, slow: bool):
    init = await session.initialize()
    report("initialize", bool(init.serverInfo.name), init.serverInfo.name)

    tools = {t.name for t in (await session.list_tools()).tools}
    wanted = {P + n for n in ("echo", "get-sum", "trigger-long-running-operation", "trigger-sampling-request",
                              "trigger-elicitation-request", "get-roots-list")}
    report("tools/list", wanted <= tools, f"missing {sorted(wanted - tools)}")

    r = await session.call_tool(P + "echo", {"message": f"hello {c.tag}"})
    report("tools/call echo", f"hello {c.tag}" in text_of(r), text_of(r))

    r = await session.call_tool(P + "get-sum", {"a": 2, "b": 40})
    report("tools/call get-sum", "42" in text_of(r), text_of(r))

    r = await session.call_tool(P + "no-such-tool", {})
    report("unknown tool is an error", r.isError or "not found" in text_of(r).lower(), text_of(r))

    progress = []

    async def on_progress(p, total, message):
        progress.append(p)

    r = await session.call_tool(P + "trigger-long-running-operation", {"duration": 1, "steps": 3},
                                progress_callback=on_progress)
    report("progress", len(progress) >= 3 and not r.isError, f"{len(progress)} progress notifications")

    async with turn():
        r = await session.call_tool(P + "trigger-sampling-request", {"prompt": "hi", "maxTokens": 10})
    report("sampling", f"reply-from-{c.tag}" in text_of(r), text_of(r)[:200])

    async with turn():
        r = await session.call_tool(P + "trigger-elicitation-request", {})
    report("elicitation", f"user-{c.tag}" in text_of(r), text_of(r)[:200])

    async with turn():
        r = await session.call_tool(P + "get-roots-list", {})
    report("roots", f"file:///roots/{c.tag}" in text_of(r), text_of(r)[:200])

    resources = (await session.list_resources()).resources
    report("resources/list", len(resources) > 0, f"{len(resources)} resources")
    if resources:
        read = await session.read_resource(resources[0].uri)
        report("resources/read", len(read.contents) > 0, str(resources[0].uri))

    templates = (await session.list_resource_templates()).resourceTemplates
    report("resources/templates/list", len(templates) > 0, f"{len(templates)} templates")
    text_templates = [t for t in templates if "/text/" in t.uriTemplate]
    if text_templates:
        uri = text_templates[0].uriTemplate.replace("{resourceId}", "7")
        read = await session.read_resource(uri)
        report("resources/read (template)", len(read.contents) > 0, uri)

    prompts = {p.name for p in (await session.list_prompts()).prompts}
    report("prompts/list", P + "simple-prompt" in prompts, str(sorted(prompts)))
    p = await session.get_prompt(P + "simple-prompt")
    report("prompts/get", len(p.messages) > 0, f"{len(p.messages)} messages")

    comp = await session.complete(types.PromptReference(type="ref/prompt", name=P + "completable-prompt"),
                                  {"name": "department", "value": "E"})
    report("completion/complete", len(comp.completion.values) > 0, str(comp.completion.values))

    r = await session.send_ping()
    report("ping", isinstance(r, types.EmptyResult), "")

    if slow:
        await session.set_logging_level("debug")
        await session.call_tool(P + "toggle-simulated-logging", {})
        got = await wait_for(lambda: len(c.logs) > 0, 15)
        await session.call_tool(P + "toggle-simulated-logging", {})
        report("logging", got, f"{len(c.logs)} log messages")

        uri = str(resources[0].uri) if resources else "demo://resource/static/document/architecture.md"
        await session.subscribe_resource(uri)
        await session.call_tool(P + "toggle-subscriber-updates", {})
        got = await wait_for(lambda: len(c.updates) > 0, 15)
        await session.call_tool(P + "toggle-subscriber-updates", {})
        await session.unsubscribe_resource(uri)
        report("resources/subscribe + updated", got, f"{len(c.updates)} updates")


@asynccontextmanager
async def connect(args):
    if args.stdio:
        params = StdioServerParameters(command=args.stdio[0], args=args.stdio[1:])
        async with stdio_client(params) as (r, w):
            yield r, w
    elif args.transport == "sse":
        async with sse_client(args.url) as (r, w):
            yield r, w
    else:
        async with streamablehttp_client(args.url) as (r, w, _):
            yield r, w


async def one_client(args, tag: str, failures: list, slow: bool):
    c = Client(tag)

    def report(name, ok, detail):
        line = f"{'ok  ' if ok else 'FAIL'} [{tag}] {name}: {detail}"
        print(line, flush=True)
        if not ok:
            failures.append(line)

    done = False
    try:
        async with connect(args) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=TIMEOUT,
                                     sampling_callback=c.sampling,
                                     elicitation_callback=c.elicitation,
                                     list_roots_callback=c.roots,
                                     logging_callback=c.logging,
                                     message_handler=c.messages) as session:
                await scenario(session, c, report, slow)
                done = True
    except BaseExceptionGroup as group:
        # The SDK's SSE client raises BrokenResourceError when a notification (another
        # client's log messages, say) arrives while it is closing. Only after every check ran.
        import anyio

        _, rest = group.split(anyio.BrokenResourceError)
        if not done or rest is not None:
            raise
        print(f"note [{tag}] the SDK client failed while closing: BrokenResourceError", flush=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--transport", choices=["streamable", "sse"], default="streamable")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="skip the checks that wait for timers")
    ap.add_argument("--take-turns", action="store_true",
                    help="make calls that trigger server requests one client at a time")
    ap.add_argument("--prefix", default="", help="tool and prompt names carry this prefix")
    ap.add_argument("--stdio", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    global TAKE_TURNS, P
    TAKE_TURNS = args.take_turns
    P = args.prefix
    failures: list[str] = []
    tags = [chr(ord("A") + i) for i in range(args.clients)]
    # Sessions run side by side; the first one also runs the checks that wait for timers.
    await asyncio.wait_for(
        asyncio.gather(*(one_client(args, t, failures, slow=(i == 0 and not args.quick))
                         for i, t in enumerate(tags))),
        timeout=180,
    )
    print(f"{len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    asyncio.run(main())
