#!/usr/bin/env python3
"""The official Python SDK 2.x client, set to one protocol era, driving the era test tools
(tests/servers/era_server.py or sdk2_server.py) through the proxy.

--era modern: `Client(mode="2026-07-28")`, no probe, no handshake: per-request `_meta`,
              input_required rounds answered by the callbacks, `subscriptions/listen`.
--era legacy: `Client(mode="legacy")`: the initialize handshake, server requests mid-call,
              `resources/subscribe`.

Reaches the server over Streamable HTTP (--url URL) or by starting a command (--stdio CMD...).
Checks tools/call, elicitation, sampling, roots, progress, a list-changed notification and a
resource update; prints one line per check and exits non-zero if any failed.
"""

import argparse
import sys

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters

WATCHED = "test://watched"
RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)


def text_of(r: types.CallToolResult) -> str:
    return " ".join(c.text for c in r.content if isinstance(c, types.TextContent))


async def sampling(context, params):
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="Paris"), model="test-model", stop_reason="endTurn"
    )


async def elicitation(context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada"})


async def roots(context):
    return types.ListRootsResult(roots=[types.Root(uri="file:///work/era", name="era")])


# Behind a merged view, tool names carry the server's prefix.
P = ""


async def scenario(args) -> None:
    target = args.url or StdioServerParameters(command=args.stdio[0], args=args.stdio[1:])
    modern = args.era == "modern"
    changed = anyio.Event()
    updated = anyio.Event()

    async def messages(message):
        root = getattr(message, "root", message)
        if isinstance(root, types.ToolListChangedNotification):
            changed.set()
        if isinstance(root, types.ResourceUpdatedNotification):
            updated.set()

    client = Client(
        target,
        mode="2026-07-28" if modern else "legacy",
        read_timeout_seconds=30,
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        list_roots_callback=roots,
        message_handler=messages,
        cache=None,
    )
    async with client:
        check("connected", True, f"protocol {client.protocol_version}")
        tools = await client.list_tools()
        check("tools/list", {P + n for n in ("echo", "ask", "sample", "roots", "slow", "change")} <= {t.name for t in tools.tools})
        r = await client.call_tool(P + "echo", {"text": "hi"})
        check("tools/call", text_of(r) == "hi", text_of(r))
        r = await client.call_tool(P + "ask", {})
        check("elicitation", text_of(r) == "hello Ada", text_of(r))
        r = await client.call_tool(P + "sample", {})
        check("sampling", text_of(r) == "model said: Paris", text_of(r))
        r = await client.call_tool(P + "roots", {})
        check("roots", text_of(r) == "roots: file:///work/era", text_of(r))
        progress: list = []

        async def on_progress(p, total, message):
            progress.append(p)

        r = await client.call_tool(P + "slow", {}, progress_callback=on_progress)
        check("progress", text_of(r) == "done" and len(progress) >= 1, f"{len(progress)} notifications")

        if modern:
            events: list = []
            async with client.listen(tools_list_changed=True, resource_subscriptions=[WATCHED]) as sub:
                check("subscriptions/listen acknowledged", True, str(sub.honored))
                await client.call_tool(P + "change", {})
                with anyio.fail_after(20):
                    async for event in sub:
                        events.append(type(event).__name__)
                        if len(events) >= 2:
                            break
            check("list_changed and resource update", len(events) >= 2, ",".join(events))
        else:
            await client.subscribe_resource(WATCHED)
            await client.call_tool(P + "change", {})
            try:
                with anyio.fail_after(20):
                    await changed.wait()
                    await updated.wait()
                check("list_changed and resource update", True)
            except TimeoutError:
                check("list_changed and resource update", False, f"changed={changed.is_set()} updated={updated.is_set()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--era", choices=["legacy", "modern"], required=True)
    parser.add_argument("--url")
    parser.add_argument("--prefix", default="", help="tool names carry this prefix (a merged view)")
    parser.add_argument("--stdio", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    global P
    P = args.prefix
    try:
        anyio.run(scenario, args)
    except BaseException as e:  # a crash is a failed check, with its reason
        detail = "; ".join(repr(x) for x in getattr(e, "exceptions", [e]))
        check("scenario", False, f"{type(e).__name__}: {detail}")
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed", flush=True)
    return 1 if failed or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(main())
