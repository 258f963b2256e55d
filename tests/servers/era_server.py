#!/usr/bin/env python3
"""One MCP server, in either protocol era, for the era-bridging tests.

--era legacy: the official Python SDK (low-level server), session-based revisions.
--era modern: revision 2026-07-28 written out by hand from the specification, since no SDK
              speaks it yet: no initialize, `_meta` on every request, `server/discover`,
              input_required results instead of server requests, `subscriptions/listen`.

Both offer the same tools, so that a client sees the same behaviour whatever era is behind
the proxy:
  echo {text}  -> the text
  ask          -> elicits a name, answers "hello NAME"
  sample       -> samples the client's model, answers "model said: TEXT"
  roots        -> lists the client's roots, answers "roots: URI,..."
  slow         -> three progress notifications, then "done"
  change       -> tools/list_changed and resources/updated for test://watched, then "changed"
  region {region} -> "region: REGION" (its argument is mirrored in Mcp-Param-Region over HTTP,
                  which the modern server checks)
and the resource test://watched.

Runs on stdio, or with --port N over Streamable HTTP at http://127.0.0.1:N/mcp.
"""

import argparse
import asyncio
import base64
import json
import sys

MODERN = "2026-07-28"
WATCHED = "test://watched"
INFO = {"name": "era-test-server", "version": "1.0.0"}

TOOLS = [
    {"name": "echo", "description": "Echo text", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "ask", "description": "Ask the user for a name", "inputSchema": {"type": "object"}},
    {"name": "sample", "description": "Ask the client's model", "inputSchema": {"type": "object"}},
    {"name": "roots", "description": "List the client's roots", "inputSchema": {"type": "object"}},
    {"name": "slow", "description": "Reports progress", "inputSchema": {"type": "object"}},
    {"name": "change", "description": "Changes the tool list and the watched resource", "inputSchema": {"type": "object"}},
    {"name": "region", "description": "Says its region, which HTTP clients mirror in Mcp-Param-Region",
     "inputSchema": {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}, "required": ["region"]}},
]
ELICIT = {
    "mode": "form",
    "message": "What is your name?",
    "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
}
SAMPLE = {
    "messages": [{"role": "user", "content": {"type": "text", "text": "What is the capital of France?"}}],
    "maxTokens": 50,
}


def text(t: str) -> dict:
    return {"content": [{"type": "text", "text": t}]}


# ======================================================================================
# legacy: the official SDK
# ======================================================================================


SLOW_LISTS = 0.0


def legacy_server():
    import mcp.types as types
    from mcp.server.lowlevel import NotificationOptions, Server

    server = Server("era-test-server", version="1.0.0")

    @server.list_tools()
    async def list_tools():
        if SLOW_LISTS:
            await asyncio.sleep(SLOW_LISTS)
        return [types.Tool(**t) for t in TOOLS]

    @server.call_tool()
    async def call_tool(name: str, arguments: dict):
        ctx = server.request_context
        session = ctx.session
        if name == "echo":
            return [types.TextContent(type="text", text=str(arguments.get("text", "")))]
        if name == "ask":
            r = await session.elicit(ELICIT["message"], ELICIT["requestedSchema"], related_request_id=ctx.request_id)
            return [types.TextContent(type="text", text=f"hello {(r.content or {}).get('name', '?')}")]
        if name == "sample":
            r = await session.create_message(
                messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=SAMPLE["messages"][0]["content"]["text"]))],
                max_tokens=50,
                related_request_id=ctx.request_id,
            )
            said = r.content.text if isinstance(r.content, types.TextContent) else "?"
            return [types.TextContent(type="text", text=f"model said: {said}")]
        if name == "roots":
            r = await session.list_roots()
            return [types.TextContent(type="text", text="roots: " + ",".join(str(x.uri) for x in r.roots))]
        if name == "slow":
            token = ctx.meta.progressToken if ctx.meta else None
            for i in range(1, 4):
                if token is not None:
                    await session.send_progress_notification(token, i, 3, related_request_id=ctx.request_id)
                await asyncio.sleep(0.02)
            return [types.TextContent(type="text", text="done")]
        if name == "region":
            return [types.TextContent(type="text", text=f"region: {arguments.get('region')}")]
        if name == "change":
            await session.send_tool_list_changed()
            await session.send_resource_updated(WATCHED)
            return [types.TextContent(type="text", text="changed")]
        raise ValueError(f"unknown tool {name}")

    @server.list_resources()
    async def list_resources():
        return [types.Resource(uri=WATCHED, name="watched", mimeType="text/plain")]

    @server.read_resource()
    async def read_resource(uri):
        from mcp.server.lowlevel.helper_types import ReadResourceContents

        return [ReadResourceContents(content="watched content", mime_type="text/plain")]

    @server.subscribe_resource()
    async def subscribe(uri):
        return None

    @server.unsubscribe_resource()
    async def unsubscribe(uri):
        return None

    options = server.create_initialization_options(NotificationOptions(tools_changed=True, resources_changed=True), {})
    return server, options


def run_legacy(port: int | None) -> None:
    import anyio

    server, options = legacy_server()
    if port:
        import contextlib

        import uvicorn
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from starlette.applications import Starlette
        from starlette.routing import Route

        # The session manager asks the server for its options: give it the ones above.
        server.create_initialization_options = lambda *a, **k: options
        manager = StreamableHTTPSessionManager(app=server)

        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with manager.run():
                yield

        class Endpoint:
            async def __call__(self, scope, receive, send):
                await manager.handle_request(scope, receive, send)

        app = Starlette(routes=[Route("/mcp", endpoint=Endpoint(), methods=["GET", "POST", "DELETE"])], lifespan=lifespan)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
        return

    from mcp.server.stdio import stdio_server

    async def run() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, options)

    anyio.run(run)


# ======================================================================================
# modern: revision 2026-07-28 by hand
# ======================================================================================


class RpcError(Exception):
    def __init__(self, code: int, message: str, data=None, status: int = 200):
        super().__init__(message)
        self.code, self.message, self.data, self.status = code, message, data, status

    def body(self) -> dict:
        e = {"code": self.code, "message": self.message}
        if self.data is not None:
            e["data"] = self.data
        return e


def state_for(tool: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"tool": tool}).encode()).decode()


class Modern:
    """The transport-independent part: one request in, notifications and one answer out."""

    def __init__(self):
        # subscription id -> (filter, queue of notifications)
        self.listeners: dict = {}

    def check_meta(self, params: dict) -> dict:
        meta = params.get("_meta") or {}
        version = meta.get("io.modelcontextprotocol/protocolVersion")
        if version != MODERN:
            raise RpcError(-32022, "Unsupported protocol version", {"supported": [MODERN], "requested": version}, 400)
        return meta

    async def handle(self, msg: dict, emit) -> dict:
        method = msg.get("method")
        params = msg.get("params") or {}
        if method == "initialize":
            raise RpcError(-32601, f"this server speaks only protocol revision {MODERN}; initialize does not exist there", None, 404)
        meta = self.check_meta(params)
        if method != "server/discover" and "io.modelcontextprotocol/clientCapabilities" not in meta:
            raise RpcError(-32602, "clientCapabilities missing from _meta", None, 400)
        caps = meta.get("io.modelcontextprotocol/clientCapabilities") or {}
        if method == "server/discover":
            return {
                "resultType": "complete",
                "supportedVersions": [MODERN],
                "capabilities": {
                    "tools": {"listChanged": True},
                    "resources": {"subscribe": True, "listChanged": True},
                    "logging": {},
                },
                "instructions": "A test server of protocol revision 2026-07-28.",
                "_meta": {"io.modelcontextprotocol/serverInfo": INFO},
                "ttlMs": 0,
                "cacheScope": "public",
            }
        if method == "tools/list":
            return {"resultType": "complete", "tools": TOOLS, "ttlMs": 0, "cacheScope": "public"}
        if method == "resources/list":
            return {
                "resultType": "complete",
                "resources": [{"uri": WATCHED, "name": "watched", "mimeType": "text/plain"}],
                "ttlMs": 0,
                "cacheScope": "public",
            }
        if method == "resources/read":
            return {
                "resultType": "complete",
                "contents": [{"uri": params.get("uri"), "mimeType": "text/plain", "text": "watched content"}],
                "ttlMs": 0,
                "cacheScope": "public",
            }
        if method == "tools/call":
            return await self.call(params, meta, caps, emit)
        raise RpcError(-32601, f"Method not found: {method}", None, 404)

    async def call(self, params: dict, meta: dict, caps: dict, emit) -> dict:
        name = params.get("name")
        args = params.get("arguments") or {}
        responses = params.get("inputResponses") or {}
        state = params.get("requestState")

        def ask(key: str, cap: str, request: dict) -> dict:
            if cap not in caps:
                raise RpcError(-32021, f"this tool needs the {cap} capability", {"requiredCapabilities": {cap: {}}}, 400)
            return {"resultType": "input_required", "inputRequests": {key: request}, "requestState": state_for(name)}

        def answered(key: str):
            if state is not None and state != state_for(name):
                raise RpcError(-32602, "requestState does not belong to this call")
            return responses.get(key) if state is not None else None

        if name == "echo":
            return {"resultType": "complete", **text(str(args.get("text", "")))}
        if name == "region":
            return {"resultType": "complete", **text(f"region: {args.get('region')}")}
        if name == "ask":
            r = answered("user_name")
            if r is None:
                return ask("user_name", "elicitation", {"method": "elicitation/create", "params": ELICIT})
            return {"resultType": "complete", **text(f"hello {(r.get('content') or {}).get('name', '?')}")}
        if name == "sample":
            r = answered("capital")
            if r is None:
                return ask("capital", "sampling", {"method": "sampling/createMessage", "params": SAMPLE})
            return {"resultType": "complete", **text(f"model said: {(r.get('content') or {}).get('text', '?')}")}
        if name == "roots":
            r = answered("roots")
            if r is None:
                return ask("roots", "roots", {"method": "roots/list", "params": {}})
            return {"resultType": "complete", **text("roots: " + ",".join(x.get("uri", "") for x in r.get("roots", [])))}
        if name == "slow":
            token = meta.get("progressToken")
            for i in range(1, 4):
                if token is not None:
                    await emit({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": i, "total": 3}})
                await asyncio.sleep(0.02)
            return {"resultType": "complete", **text("done")}
        if name == "change":
            for sid, (flt, queue) in list(self.listeners.items()):
                if flt.get("toolsListChanged"):
                    await queue.put({"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": sid}}})
                if WATCHED in (flt.get("resourceSubscriptions") or []):
                    await queue.put({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": WATCHED, "_meta": {"io.modelcontextprotocol/subscriptionId": sid}}})
            return {"resultType": "complete", **text("changed")}
        return {"resultType": "complete", "isError": True, **text(f"unknown tool {name}")}

    async def listen(self, msg: dict, send) -> None:
        """Serve a subscription until the task is cancelled (the client closed it)."""
        params = msg.get("params") or {}
        self.check_meta(params)
        sid = msg["id"]
        wanted = params.get("notifications") or {}
        honoured = {}
        if wanted.get("toolsListChanged"):
            honoured["toolsListChanged"] = True
        if wanted.get("resourcesListChanged"):
            honoured["resourcesListChanged"] = True
        subs = [u for u in wanted.get("resourceSubscriptions") or [] if u == WATCHED]
        if subs:
            honoured["resourceSubscriptions"] = subs
        queue: asyncio.Queue = asyncio.Queue()
        self.listeners[sid] = (honoured, queue)
        try:
            await send({
                "jsonrpc": "2.0",
                "method": "notifications/subscriptions/acknowledged",
                "params": {"notifications": honoured, "_meta": {"io.modelcontextprotocol/subscriptionId": sid}},
            })
            while True:
                await send(await queue.get())
        finally:
            self.listeners.pop(sid, None)


def answer(msg: dict, result=None, error: RpcError | None = None) -> dict:
    out = {"jsonrpc": "2.0", "id": msg.get("id")}
    if error is not None:
        out["error"] = error.body()
    else:
        out["result"] = result
    return out


async def run_modern_stdio() -> None:
    core = Modern()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    lock = asyncio.Lock()
    tasks: dict = {}

    async def send(m: dict) -> None:
        async with lock:
            sys.stdout.write(json.dumps(m) + "\n")
            sys.stdout.flush()

    async def serve(msg: dict) -> None:
        try:
            if msg.get("method") == "subscriptions/listen":
                await core.listen(msg, send)
                return
            result = await core.handle(msg, send)
            await send(answer(msg, result))
        except RpcError as e:
            await send(answer(msg, error=e))
        except asyncio.CancelledError:
            pass
        finally:
            tasks.pop(json.dumps(msg.get("id")), None)

    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            msg = json.loads(line)
        except ValueError:
            await send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}})
            continue
        if "id" in msg and "method" in msg:
            tasks[json.dumps(msg["id"])] = asyncio.create_task(serve(msg))
        elif msg.get("method") == "notifications/cancelled":
            t = tasks.pop(json.dumps((msg.get("params") or {}).get("requestId")), None)
            if t:
                t.cancel()


def run_modern_http(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    core = Modern()

    def refuse(status: int, msg: dict | None, code: int, message: str, data=None) -> Response:
        return JSONResponse(answer(msg or {}, error=RpcError(code, message, data)), status_code=status)

    async def endpoint(request: Request) -> Response:
        if request.method != "POST":
            return Response(status_code=405)
        try:
            msg = json.loads(await request.body())
        except ValueError:
            return refuse(400, None, -32700, "Parse error")
        if not isinstance(msg, dict):
            return refuse(400, None, -32600, "a single JSON-RPC message is expected")
        header = request.headers.get("mcp-protocol-version")
        params = msg.get("params") or {}
        body_version = (params.get("_meta") or {}).get("io.modelcontextprotocol/protocolVersion")
        if header is None:
            return refuse(400, msg, -32020, "Header mismatch: MCP-Protocol-Version header is required")
        if header != MODERN:
            return refuse(400, msg, -32022, "Unsupported protocol version", {"supported": [MODERN], "requested": header})
        if body_version is not None and body_version != header:
            return refuse(400, msg, -32020, "Header mismatch: MCP-Protocol-Version does not match _meta")
        method = msg.get("method")
        if request.headers.get("mcp-method") != method:
            return refuse(400, msg, -32020, "Header mismatch: Mcp-Method does not match the body")
        if method in ("tools/call", "prompts/get", "resources/read"):
            name = params.get("uri") if method == "resources/read" else params.get("name")
            h = request.headers.get("mcp-name") or ""
            if h.startswith("=?base64?") and h.endswith("?="):
                h = base64.b64decode(h[9:-2]).decode()
            if h != name:
                return refuse(400, msg, -32020, "Header mismatch: Mcp-Name does not match the body")
            if method == "tools/call" and name == "region":
                value = (params.get("arguments") or {}).get("region")
                sent = request.headers.get("mcp-param-region")
                if sent is not None and sent.startswith("=?base64?") and sent.endswith("?="):
                    sent = base64.b64decode(sent[9:-2]).decode()
                if sent != value:
                    return refuse(400, msg, -32020, f"Header mismatch: Mcp-Param-Region is {sent!r}, the argument {value!r}")
        if "id" not in msg:
            return Response(status_code=202)

        if method == "subscriptions/listen":
            queue: asyncio.Queue = asyncio.Queue()

            async def put(m):
                await queue.put(m)

            task = asyncio.create_task(core.listen(msg, put))

            async def events():
                try:
                    while True:
                        m = await queue.get()
                        yield f"event: message\ndata: {json.dumps(m)}\n\n"
                finally:
                    task.cancel()

            return StreamingResponse(events(), media_type="text/event-stream")

        if method == "tools/call" and (params.get("name") == "slow"):
            queue = asyncio.Queue()

            async def emit(m):
                await queue.put(m)

            async def work():
                try:
                    await queue.put(answer(msg, await core.handle(msg, emit)))
                except RpcError as e:
                    await queue.put(answer(msg, error=e))

            task = asyncio.create_task(work())

            async def events():
                try:
                    while True:
                        m = await queue.get()
                        yield f"event: message\ndata: {json.dumps(m)}\n\n"
                        if "id" in m:
                            return
                finally:
                    task.cancel()

            return StreamingResponse(events(), media_type="text/event-stream")

        async def no_emit(m):
            return None

        try:
            return JSONResponse(answer(msg, await core.handle(msg, no_emit)))
        except RpcError as e:
            return JSONResponse(answer(msg, error=e), status_code=e.status)

    app = Starlette(routes=[Route("/mcp", endpoint=endpoint, methods=["GET", "POST", "DELETE"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--era", choices=["legacy", "modern"], required=True)
    parser.add_argument("--port", type=int, help="serve Streamable HTTP on this port instead of stdio")
    parser.add_argument("--slow-lists", type=float, default=0.0, help="answer tools/list after this many seconds (legacy)")
    args = parser.parse_args()
    global SLOW_LISTS
    SLOW_LISTS = args.slow_lists
    if args.era == "legacy":
        run_legacy(args.port)
    elif args.port:
        run_modern_http(args.port)
    else:
        asyncio.run(run_modern_stdio())


if __name__ == "__main__":
    main()
