#!/usr/bin/env python3
"""Edit the proxy's config file under a connected official-SDK client, and check each step.

The proxy serves the merged view of the servers in --config (over Streamable HTTP at --url,
or on stdio when started with --stdio CMD...). The file starts with the demo server only.
This client stays connected throughout while it:

1. adds mcp-server-time: a tools/list_changed arrives, and `time--get_current_time` works;
2. removes the demo server while a call to it runs: that call fails, naming the removal,
   a tools/list_changed arrives, and the time server keeps serving the same session;
3. writes a broken file: nothing changes;
4. hides one of the time server's tools by its own `tools.deny`: a tools/list_changed
   arrives and the tool is gone, without the server being restarted.

Prints one line per check and exits non-zero at the first failure.
"""

import argparse
import asyncio
import json
import os
import sys
from datetime import timedelta

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError

WAIT = 20.0


class Watcher:
    def __init__(self):
        self.changed = asyncio.Event()

    async def handle(self, message):
        if isinstance(message, types.ServerNotification) and isinstance(
            message.root, types.ToolListChangedNotification
        ):
            self.changed.set()


def fail(what: str):
    print(f"FAIL {what}", flush=True)
    sys.exit(1)


def check(ok: bool, what: str):
    if not ok:
        fail(what)
    print(f"ok {what}", flush=True)


def write(path: str, servers: dict):
    # Written whole and renamed into place, as editors do.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"mcpServers": servers}, f, indent=2)
    os.replace(tmp, path)


async def names(session: ClientSession) -> set[str]:
    return {t.name for t in (await session.list_tools()).tools}


async def changed(w: Watcher, what: str):
    try:
        await asyncio.wait_for(w.changed.wait(), WAIT)
    except asyncio.TimeoutError:
        fail(f"no tools/list_changed within {WAIT}s after {what}")
    w.changed.clear()
    print(f"ok tools/list_changed after {what}", flush=True)


async def scenario(session: ClientSession, w: Watcher, a: argparse.Namespace):
    await session.initialize()
    demo = {"command": a.demo, "args": ["--demo-server"]}
    time = {"command": a.time, "args": ["--local-timezone", "UTC"]}

    have = await names(session)
    check("demo--echo" in have and not any(n.startswith("time--") for n in have),
          f"the demo server alone at first: {sorted(have)}")

    # 1. Add a server.
    w.changed.clear()
    write(a.config, {"demo": demo, "time": time})
    await changed(w, "adding `time`")
    have = await names(session)
    check({"demo--echo", "time--get_current_time", "time--convert_time"} <= have,
          f"both servers listed: {sorted(have)}")
    r = await session.call_tool("time--get_current_time", {"timezone": "UTC"})
    check(not r.isError and "UTC" in r.content[0].text, "the added server answers")
    r = await session.call_tool("demo--echo", {"message": "still here"})
    check(r.content[0].text == "still here", "the untouched server still answers")

    # 2. Remove a server in the middle of a call to it.
    slow = asyncio.create_task(session.call_tool("demo--sleep", {"ms": 30000}))
    await asyncio.sleep(1.0)
    write(a.config, {"time": time})
    try:
        r = await asyncio.wait_for(slow, WAIT)
        fail(f"the call to the removed server should fail, got {r}")
    except McpError as e:
        check("removed" in str(e), f"the call to the removed server failed: {e}")
    except asyncio.TimeoutError:
        fail("the call to the removed server hung")
    await changed(w, "removing `demo`")
    have = await names(session)
    check(not any(n.startswith("demo--") for n in have) and "time--get_current_time" in have,
          f"the removed server's tools are gone: {sorted(have)}")
    r = await session.call_tool("time--get_current_time", {"timezone": "UTC"})
    check(not r.isError, "the remaining server answers in the same session")
    try:
        r = await session.call_tool("demo--echo", {"message": "x"})
        check(r.isError, "a call to a removed server's tool is refused")
    except McpError as e:
        check("demo--echo" in str(e), f"a call to a removed server's tool is refused: {e}")

    # 3. A broken file changes nothing.
    with open(a.config, "w") as f:
        f.write('{ "mcpServers": { "time": { "command": ')
    await asyncio.sleep(2.0)
    check(not w.changed.is_set(), "no list_changed for a broken file")
    have2 = await names(session)
    check(have2 == have, "a broken file leaves the lists as they were")
    r = await session.call_tool("time--get_current_time", {"timezone": "UTC"})
    check(not r.isError, "a broken file leaves the servers running")

    # 4. New tool rules for a running server.
    write(a.config, {"time": dict(time, tools={"deny": ["convert_*"]})})
    await changed(w, "denying `convert_*`")
    have = await names(session)
    check("time--get_current_time" in have and "time--convert_time" not in have,
          f"the denied tool is hidden: {sorted(have)}")
    try:
        await session.call_tool("time--convert_time",
                                {"source_timezone": "UTC", "time": "12:00",
                                 "target_timezone": "UTC"})
        fail("a call to the denied tool should be refused")
    except McpError as e:
        check("not available" in str(e), f"a call to the denied tool is refused: {e}")
    print("all checks passed", flush=True)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url")
    p.add_argument("--config", required=True)
    p.add_argument("--demo", required=True, help="the mcp-proxy binary (its demo server)")
    p.add_argument("--time", required=True, help="the mcp-server-time command")
    p.add_argument("--stdio", nargs=argparse.REMAINDER)
    a = p.parse_args()
    w = Watcher()
    timeout = timedelta(seconds=WAIT)
    if a.stdio:
        params = StdioServerParameters(command=a.stdio[0], args=a.stdio[1:])
        async with stdio_client(params) as (r, wr):
            async with ClientSession(r, wr, read_timeout_seconds=timeout,
                                     message_handler=w.handle) as s:
                await scenario(s, w, a)
    else:
        async with streamablehttp_client(a.url) as (r, wr, _):
            async with ClientSession(r, wr, read_timeout_seconds=timeout,
                                     message_handler=w.handle) as s:
                await scenario(s, w, a)


if __name__ == "__main__":
    asyncio.run(main())
