#!/usr/bin/env python3
"""A client of either protocol era that drives tests/servers/era_server.py's tools.

--era legacy: the official Python SDK client (initialize, sessions, server requests).
--era modern: revision 2026-07-28 written out by hand from the specification: `_meta` on every
              request, MCP-Protocol-Version / Mcp-Method / Mcp-Name headers on HTTP,
              input_required results answered by retrying with inputResponses and requestState,
              `subscriptions/listen` for change notifications.

Reaches the server over Streamable HTTP (--url URL) or by starting a command on stdio
(--stdio CMD ...). Checks: discover/initialize, tools/call, an elicitation, a sampling request,
a roots request, progress, a list-changed notification and a resource update. Prints one line
per check and exits non-zero if any failed.
"""

import argparse
import asyncio
import base64
import itertools
import json
import sys

MODERN = "2026-07-28"
WATCHED = "test://watched"
TIMEOUT = 30
RESULTS: list[tuple[str, bool, str]] = []
# Set once every check of the legacy scenario ran (what fails after it is only the closing).
SCENARIO_DONE = False
PREFIX = ""


def t(name: str) -> str:
    """A tool's name as the client sees it (behind a merged view: prefixed)."""
    return PREFIX + name


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)


def text_of(result: dict) -> str:
    return " ".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")


# ======================================================================================
# modern
# ======================================================================================

CAPS = {"elicitation": {"form": {}}, "sampling": {}, "roots": {}}
INFO = {"name": "era-test-client", "version": "1.0.0"}


def meta(extra: dict | None = None) -> dict:
    m = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": CAPS,
        "io.modelcontextprotocol/clientInfo": INFO,
    }
    m.update(extra or {})
    return m


def input_answer(request: dict) -> dict:
    method = request["method"]
    if method == "elicitation/create":
        return {"action": "accept", "content": {"name": "Ada"}}
    if method == "sampling/createMessage":
        return {"role": "assistant", "content": {"type": "text", "text": "Paris"}, "model": "test-model", "stopReason": "endTurn"}
    if method == "roots/list":
        return {"roots": [{"uri": "file:///work/era", "name": "era"}]}
    raise ValueError(method)


def header_value(v: str) -> str:
    safe = v.isascii() and v.isprintable() and v == v.strip() and not (v.startswith("=?base64?") and v.endswith("?="))
    return v if safe else "=?base64?" + base64.b64encode(v.encode()).decode() + "?="


class HttpWire:
    def __init__(self, url: str):
        import httpx

        self.url = url
        self.http = httpx.AsyncClient(timeout=TIMEOUT)
        # tool -> [(header name, property)], from tools/list (x-mcp-header)
        self.params: dict = {}
        self.override: dict | None = None

    def learn(self, tools: list) -> None:
        for t in tools:
            props = (t.get("inputSchema") or {}).get("properties") or {}
            self.params[t["name"]] = [(s["x-mcp-header"], k) for k, s in props.items() if "x-mcp-header" in s]

    async def request(self, msg: dict, on_note):
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": MODERN,
            "mcp-method": msg["method"],
        }
        p = msg.get("params") or {}
        name = p.get("uri") if msg["method"] == "resources/read" else p.get("name")
        if name is not None:
            headers["mcp-name"] = header_value(name)
        if msg["method"] == "tools/call":
            args = p.get("arguments") or {}
            for header, prop in self.params.get(name, []):
                if args.get(prop) is not None:
                    headers[f"mcp-param-{header}".lower()] = header_value(str(args[prop]))
        if self.override is not None:
            headers.update(self.override)
        async with self.http.stream("POST", self.url, headers=headers, content=json.dumps(msg)) as r:
            ctype = r.headers.get("content-type", "")
            if ctype.startswith("application/json"):
                body = json.loads(await r.aread())
                return body, r.status_code
            data: list[str] = []
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line == "" and data:
                    m = json.loads("\n".join(data))
                    data = []
                    if "id" in m and ("result" in m or "error" in m):
                        return m, r.status_code
                    await on_note(m)
            return None, r.status_code

    async def close(self):
        await self.http.aclose()


class StdioWire:
    def __init__(self, argv: list[str]):
        self.argv = argv
        self.waiting: dict = {}
        self.handlers: dict = {}

    async def start(self):
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24
        )
        self.reader = asyncio.create_task(self.read())

    async def read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                for f in self.waiting.values():
                    if not f.done():
                        f.set_exception(EOFError("server closed stdout"))
                return
            m = json.loads(line)
            if "id" in m and ("result" in m or "error" in m):
                f = self.waiting.pop(json.dumps(m["id"]), None)
                if f and not f.done():
                    f.set_result(m)
                continue
            p = m.get("params") or {}
            key = p.get("progressToken") or (p.get("_meta") or {}).get("io.modelcontextprotocol/subscriptionId")
            h = self.handlers.get(json.dumps(key))
            if h:
                await h(m)

    async def request(self, msg: dict, on_note):
        f = asyncio.get_running_loop().create_future()
        self.waiting[json.dumps(msg["id"])] = f
        token = (msg.get("params", {}).get("_meta") or {}).get("progressToken")
        keys = [json.dumps(msg["id"])] + ([json.dumps(token)] if token is not None else [])
        for k in keys:
            self.handlers[k] = on_note
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        await self.proc.stdin.drain()
        try:
            return await f, 200
        finally:
            for k in keys:
                self.handlers.pop(k, None)

    async def cancel(self, id_) -> None:
        note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id_}}
        self.proc.stdin.write((json.dumps(note) + "\n").encode())
        await self.proc.stdin.drain()

    async def close(self):
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            self.proc.kill()


class ModernClient:
    def __init__(self, wire):
        self.wire = wire
        self.ids = itertools.count(1)

    async def call(self, method: str, params: dict | None = None, on_note=None, extra_meta=None) -> dict:
        params = dict(params or {})
        params["_meta"] = meta(extra_meta)
        rounds = 0

        async def ignore(m):
            return None

        while True:
            msg = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
            answer, status = await asyncio.wait_for(self.wire.request(msg, on_note or ignore), TIMEOUT)
            if answer is None:
                raise RuntimeError(f"{method}: the stream ended without an answer (HTTP {status})")
            if "error" in answer:
                raise RuntimeError(f"{method}: error {answer['error']}")
            result = answer["result"]
            if result.get("resultType") != "input_required":
                return result
            rounds += 1
            if rounds > 5:
                raise RuntimeError("too many input rounds")
            self.last_input = result
            params = dict(params)
            params["inputResponses"] = {k: input_answer(r) for k, r in (result.get("inputRequests") or {}).items()}
            if "requestState" in result:
                params["requestState"] = result["requestState"]
            else:
                params.pop("requestState", None)


async def modern_scenario(wire) -> None:
    c = ModernClient(wire)
    d = await c.call("server/discover")
    check("discover", MODERN in d.get("supportedVersions", []) and "tools" in d.get("capabilities", {}),
          json.dumps(d.get("_meta", {}).get("io.modelcontextprotocol/serverInfo")))
    tools = await c.call("tools/list")
    if isinstance(wire, HttpWire):
        wire.learn(tools["tools"])
    check("tools/list has the cache fields", "ttlMs" in tools and "cacheScope" in tools and tools.get("resultType") == "complete")
    check("tools/list", {t(n) for n in ("echo", "ask", "sample", "slow", "change")} <= {x["name"] for x in tools["tools"]})
    r = await c.call("tools/call", {"name": t("echo"), "arguments": {"text": "hi"}})
    check("tools/call", text_of(r) == "hi" and r.get("resultType") == "complete", text_of(r))
    r = await c.call("tools/call", {"name": t("region"), "arguments": {"region": "eu-west 1"}})
    check("tools/call with an Mcp-Param header", text_of(r) == "region: eu-west 1", text_of(r))
    if isinstance(wire, HttpWire):
        wire.override = {"mcp-param-region": "us-east-1"}
        bad = {"jsonrpc": "2.0", "id": 998, "method": "tools/call",
               "params": {"name": t("region"), "arguments": {"region": "eu-west-1"}, "_meta": meta()}}
        answer, status = await wire.request(bad, None)
        wire.override = None
        check("Mcp-Param header that disagrees is refused", status == 400 and (answer or {}).get("error", {}).get("code") == -32020,
              f"HTTP {status} {json.dumps((answer or {}).get('error'))}")
    r = await c.call("tools/call", {"name": t("ask"), "arguments": {}})
    check("elicitation (input_required)", text_of(r) == "hello Ada", text_of(r))
    first = getattr(c, "last_input", {})
    check("input_required carries requestState", isinstance(first.get("requestState"), str))
    r = await c.call("tools/call", {"name": t("sample"), "arguments": {}})
    check("sampling (input_required)", text_of(r) == "model said: Paris", text_of(r))
    r = await c.call("tools/call", {"name": t("roots"), "arguments": {}})
    check("roots (input_required)", text_of(r) == "roots: file:///work/era", text_of(r))
    progress: list = []

    async def on_progress(m):
        if m.get("method") == "notifications/progress":
            progress.append(m["params"])

    r = await c.call("tools/call", {"name": t("slow"), "arguments": {}}, on_progress, {"progressToken": "p-1"})
    check("progress", text_of(r) == "done" and len(progress) >= 1 and all(p["progressToken"] == "p-1" for p in progress),
          f"{len(progress)} notifications")

    # A forged requestState is refused.
    bad = {"jsonrpc": "2.0", "id": 999, "method": "tools/call",
           "params": {"name": t("ask"), "arguments": {}, "requestState": "forged", "inputResponses": {}, "_meta": meta()}}
    answer, status = await wire.request(bad, on_progress)
    check("forged requestState refused", answer is not None and "error" in answer, json.dumps((answer or {}).get("error")))

    # Change notifications on a subscription stream.
    events: list = []
    acked = asyncio.Event()
    got_both = asyncio.Event()

    async def on_event(m):
        events.append(m)
        if m.get("method") == "notifications/subscriptions/acknowledged":
            acked.set()
        methods = {e.get("method") for e in events}
        if {"notifications/tools/list_changed", "notifications/resources/updated"} <= methods:
            got_both.set()

    listen_id = 10_000
    listen = {"jsonrpc": "2.0", "id": listen_id, "method": "subscriptions/listen",
              "params": {"_meta": meta(), "notifications": {"toolsListChanged": True, "resourceSubscriptions": [WATCHED]}}}
    task = asyncio.create_task(wire.request(listen, on_event))
    try:
        await asyncio.wait_for(acked.wait(), TIMEOUT)
        ack = next(e for e in events if e.get("method") == "notifications/subscriptions/acknowledged")
        check("subscriptions/listen acknowledged", ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == listen_id,
              json.dumps(ack["params"]["notifications"]))
        r = await c.call("tools/call", {"name": t("change"), "arguments": {}})
        await asyncio.wait_for(got_both.wait(), TIMEOUT)
        sub_ids = {(e.get("params", {}).get("_meta") or {}).get("io.modelcontextprotocol/subscriptionId") for e in events}
        check("list_changed and resource update on the listen stream", sub_ids == {listen_id},
              ",".join(sorted(e.get("method", "") for e in events)))
    except asyncio.TimeoutError:
        check("subscription events", False, f"got {[e.get('method') for e in events]}")
    finally:
        if isinstance(wire, StdioWire):
            await wire.cancel(listen_id)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass


# ======================================================================================
# legacy: the official SDK
# ======================================================================================


async def legacy_scenario(url: str | None, argv: list[str] | None) -> None:
    from contextlib import AsyncExitStack
    from datetime import timedelta

    import mcp.types as types
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamablehttp_client

    updates: list[str] = []
    changed = asyncio.Event()
    updated = asyncio.Event()

    async def messages(message):
        if isinstance(message, types.ServerNotification):
            root = message.root
            if isinstance(root, types.ToolListChangedNotification):
                changed.set()
            if isinstance(root, types.ResourceUpdatedNotification):
                updates.append(str(root.params.uri))
                updated.set()

    async def sampling(context, params):
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="Paris"),
                                         model="test-model", stopReason="endTurn")

    async def elicitation(context, params):
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/era", name="era")])

    async with AsyncExitStack() as stack:
        if url and url.rstrip("/").endswith("/sse"):
            from mcp.client.sse import sse_client

            read, write = await stack.enter_async_context(sse_client(url))
        elif url:
            read, write, _ = await stack.enter_async_context(streamablehttp_client(url))
        else:
            params = StdioServerParameters(command=argv[0], args=argv[1:])
            read, write = await stack.enter_async_context(stdio_client(params))
        s = await stack.enter_async_context(ClientSession(
            read, write, read_timeout_seconds=timedelta(seconds=TIMEOUT), sampling_callback=sampling,
            elicitation_callback=elicitation, list_roots_callback=roots, message_handler=messages))
        init = await s.initialize()
        check("initialize", init.serverInfo.name != "", f"{init.serverInfo.name} {init.protocolVersion}")
        tools = await s.list_tools()
        check("tools/list", {t(n) for n in ("echo", "ask", "sample", "slow", "change")} <= {x.name for x in tools.tools})
        r = await s.call_tool(t("echo"), {"text": "hi"})
        check("tools/call", text_of(r.model_dump()) == "hi")
        r = await s.call_tool(t("ask"), {})
        check("elicitation", text_of(r.model_dump()) == "hello Ada", text_of(r.model_dump()))
        r = await s.call_tool(t("sample"), {})
        check("sampling", text_of(r.model_dump()) == "model said: Paris", text_of(r.model_dump()))
        r = await s.call_tool(t("roots"), {})
        check("roots", text_of(r.model_dump()) == "roots: file:///work/era", text_of(r.model_dump()))
        progress: list = []

        async def on_progress(p, total, message):
            progress.append(p)

        r = await s.call_tool(t("slow"), {}, progress_callback=on_progress)
        check("progress", text_of(r.model_dump()) == "done" and len(progress) >= 1, f"{len(progress)} notifications")
        await s.send_ping()
        check("ping", True)
        await s.subscribe_resource(WATCHED)
        await s.call_tool(t("change"), {})
        try:
            await asyncio.wait_for(asyncio.gather(changed.wait(), updated.wait()), TIMEOUT)
            check("list_changed and resource update", updates == [WATCHED], ",".join(updates))
        except asyncio.TimeoutError:
            check("list_changed and resource update", False, f"changed={changed.is_set()} updates={updates}")
        global SCENARIO_DONE
        SCENARIO_DONE = True


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--era", choices=["legacy", "modern"], required=True)
    parser.add_argument("--url")
    parser.add_argument("--prefix", default="", help="tool names carry this prefix (a merged view, e.g. `legacy--`)")
    parser.add_argument("--stdio", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    try:
        global PREFIX
        PREFIX = args.prefix
        if args.era == "legacy":
            await legacy_scenario(args.url, args.stdio)
        else:
            if args.url:
                wire = HttpWire(args.url)
            else:
                wire = StdioWire(args.stdio)
                await wire.start()
            try:
                await modern_scenario(wire)
            finally:
                await wire.close()
    except Exception as e:  # a crash is a failed check, with its reason and where it came from
        import anyio

        # The SDK's stdio client raises BrokenResourceError when a notification (a log
        # message, a list change) arrives while it is closing its streams: harmless once
        # every check ran, as in sdk_scenario.py.
        rest = None
        if isinstance(e, BaseExceptionGroup):
            _, rest = e.split(anyio.BrokenResourceError)
        if isinstance(e, BaseExceptionGroup) and rest is None and SCENARIO_DONE:
            print("note the SDK client failed while closing: BrokenResourceError", flush=True)
        else:
            import traceback

            traceback.print_exc()
            check("scenario", False, f"{type(e).__name__}: {e}")
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed", flush=True)
    return 1 if failed or not RESULTS else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
