"""MCP server providing the fixtures that the conformance suite's server scenarios call.

Built on the official Python SDK (low-level server) so that the suite can be run against it
directly (Streamable HTTP, `--port N`) and through mcp-proxy (stdio, the default).

    python conformance_server.py              # stdio
    python conformance_server.py --port 3001  # Streamable HTTP at http://127.0.0.1:3001/mcp
"""

import argparse
import base64
import contextlib
import json
import struct
import sys
import zlib
from collections import deque

import anyio
import mcp.types as types
from mcp.server.lowlevel import NotificationOptions, Server
from pydantic import AnyUrl

JSON_SCHEMA_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def png_1x1() -> str:
    """A valid 1x1 red PNG, built rather than pasted."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


def wav_silence() -> str:
    """A valid WAV file: 8 samples of 8-bit mono silence at 8 kHz."""
    samples = b"\x80" * 8
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(samples)) + samples
    return base64.b64encode(b"RIFF" + struct.pack("<I", len(riff)) + riff).decode()


PNG = png_1x1()
WAV = wav_silence()
NO_ARGS = {"type": "object", "properties": {}}

TOOLS = [
    types.Tool(name="test_simple_text", description="Returns simple text", inputSchema=NO_ARGS),
    types.Tool(name="test_image_content", description="Returns an image", inputSchema=NO_ARGS),
    types.Tool(name="test_audio_content", description="Returns audio", inputSchema=NO_ARGS),
    types.Tool(name="test_embedded_resource", description="Returns an embedded resource", inputSchema=NO_ARGS),
    types.Tool(name="test_multiple_content_types", description="Returns text, image and resource", inputSchema=NO_ARGS),
    types.Tool(name="test_tool_with_logging", description="Logs three messages while running", inputSchema=NO_ARGS),
    types.Tool(name="test_error_handling", description="Always fails", inputSchema=NO_ARGS),
    types.Tool(name="test_tool_with_progress", description="Reports progress 0, 50, 100", inputSchema=NO_ARGS),
    types.Tool(
        name="test_sampling",
        description="Asks the client's LLM",
        inputSchema={"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    ),
    types.Tool(
        name="test_elicitation",
        description="Asks the user",
        inputSchema={"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    ),
    types.Tool(name="test_elicitation_sep1034_defaults", description="Elicitation with defaults", inputSchema=NO_ARGS),
    types.Tool(name="test_elicitation_sep1330_enums", description="Elicitation with enums", inputSchema=NO_ARGS),
    types.Tool(name="test_reconnection", description="Closes its SSE stream before answering", inputSchema=NO_ARGS),
    # For the 2026-07-28 scenarios: a tool that needs the client's sampling capability, and one
    # whose parameter is mirrored into an Mcp-Param header.
    types.Tool(name="test_missing_capability", description="Needs the client's sampling", inputSchema=NO_ARGS),
    # The input-required scenarios of 2026-07-28, as a session-based server does them: with
    # server requests mid-call, which the proxy turns into input_required results.
    *[
        types.Tool(name=f"test_input_required_result_{n}", description=f"Asks the client ({n})", inputSchema=NO_ARGS)
        for n in (
            "elicitation", "sampling", "list_roots", "request_state", "multiple_inputs",
            "multi_round", "tampered_state", "capabilities",
        )
    ],
    types.Tool(
        name="test_header_param",
        description="Says its region, mirrored in Mcp-Param-Region",
        inputSchema={
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
            "required": ["region"],
        },
    ),
    types.Tool(
        name="json_schema_2020_12_tool",
        description="Tool with JSON Schema 2020-12 features",
        inputSchema={
            "$schema": JSON_SCHEMA_2020_12,
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    ),
]

SEP1034_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "John Doe"},
        "age": {"type": "integer", "default": 30},
        "score": {"type": "number", "default": 95.5},
        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
        "verified": {"type": "boolean", "default": True},
    },
}

SEP1330_SCHEMA = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
}

PROMPTS = [
    types.Prompt(name="test_simple_prompt", description="A prompt without arguments"),
    types.Prompt(name="test_input_required_result_prompt", description="A prompt that asks the user first"),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two arguments",
        arguments=[
            types.PromptArgument(name="arg1", description="First test argument", required=True),
            types.PromptArgument(name="arg2", description="Second test argument", required=True),
        ],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt embedding a resource",
        arguments=[types.PromptArgument(name="resourceUri", description="URI to embed", required=True)],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt with an image"),
]

RESOURCES = [
    types.Resource(uri="test://static-text", name="static-text", description="Static text", mimeType="text/plain"),
    types.Resource(uri="test://static-binary", name="static-binary", description="Static PNG", mimeType="image/png"),
    types.Resource(
        uri="test://watched-resource", name="watched-resource", description="Subscribable", mimeType="text/plain"
    ),
]


NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


async def input_required_tool(session, kind: str, rid) -> list:
    """What the 2026-07-28 input-required scenarios ask, asked the session-based way."""
    text = types.TextContent

    async def elicit(message: str, schema: dict) -> dict:
        r = await session.elicit_form(message, schema, related_request_id=rid)
        return r.content or {}

    async def sample(question: str) -> str:
        msg = types.SamplingMessage(role="user", content=text(type="text", text=question))
        r = await session.create_message(messages=[msg], max_tokens=100, related_request_id=rid)
        return r.content.text if isinstance(r.content, types.TextContent) else ""

    async def roots() -> str:
        r = await session.list_roots()
        return ",".join(str(x.uri) for x in r.roots)

    if kind in ("elicitation", "tampered_state"):
        got = await elicit("What is your name?", NAME_SCHEMA)
        return [text(type="text", text=f"Hello, {got.get('name', '')}!")]
    if kind == "sampling":
        return [text(type="text", text=await sample("What is the capital of France?"))]
    if kind == "list_roots":
        return [text(type="text", text=f"roots: {await roots()}")]
    if kind == "request_state":
        await elicit("Please confirm", {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})
        return [text(type="text", text="state-ok")]
    if kind == "multiple_inputs":
        got = await elicit("What is your name?", NAME_SCHEMA)
        said = await sample("Generate a greeting")
        return [text(type="text", text=f"{said} {got.get('name', '')} ({await roots()})")]
    if kind == "multi_round":
        first = await elicit("Step 1: What is your name?", NAME_SCHEMA)
        color = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
        second = await elicit("Step 2: What is your favorite color?", color)
        return [text(type="text", text=f"{first.get('name', '')} likes {second.get('color', '')}")]
    if kind == "capabilities":
        caps = session.client_params.capabilities if session.client_params else None
        said = await sample("What is the capital of France?") if caps and caps.sampling else ""
        return [text(type="text", text=f"sampled: {said}")]
    raise ValueError(f"unknown input-required tool {kind}")


def build_server() -> Server:
    server = Server("conformance-fixtures", version="1.0.0", instructions="Fixtures for the MCP conformance suite.")
    subscriptions: set[str] = set()

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return TOOLS

    @server.call_tool()
    async def call_tool(name: str, arguments: dict):
        ctx = server.request_context
        session = ctx.session
        rid = ctx.request_id
        text = types.TextContent
        if name == "test_simple_text":
            return [text(type="text", text="This is a simple text response for testing.")]
        if name == "test_image_content":
            return [types.ImageContent(type="image", data=PNG, mimeType="image/png")]
        if name == "test_audio_content":
            return [types.AudioContent(type="audio", data=WAV, mimeType="audio/wav")]
        if name == "test_embedded_resource":
            return [
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri="test://embedded-resource", mimeType="text/plain", text="This is an embedded resource content."
                    ),
                )
            ]
        if name == "test_multiple_content_types":
            return [
                text(type="text", text="Multiple content types test:"),
                types.ImageContent(type="image", data=PNG, mimeType="image/png"),
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri="test://mixed-content-resource",
                        mimeType="application/json",
                        text=json.dumps({"test": "data", "value": 123}),
                    ),
                ),
            ]
        if name == "test_tool_with_logging":
            for i, message in enumerate(["Tool execution started", "Tool processing data", "Tool execution completed"]):
                if i:
                    await anyio.sleep(0.05)
                await session.send_log_message("info", message, logger="conformance", related_request_id=rid)
            return [text(type="text", text="Logged three messages.")]
        if name == "test_error_handling":
            raise RuntimeError("This tool intentionally returns an error for testing")
        if name == "test_tool_with_progress":
            token = ctx.meta.progressToken if ctx.meta else None
            for i, value in enumerate([0, 50, 100]):
                if i:
                    await anyio.sleep(0.05)
                if token is not None:
                    await session.send_progress_notification(token, value, 100, related_request_id=str(rid))
            return [text(type="text", text="Progress reported.")]
        if name.startswith("test_input_required_result_"):
            return await input_required_tool(session, name.removeprefix("test_input_required_result_"), rid)
        if name == "test_missing_capability":
            result = await session.create_message(
                messages=[types.SamplingMessage(role="user", content=text(type="text", text="ping"))],
                max_tokens=10,
                related_request_id=rid,
            )
            return [text(type="text", text="sampled")]
        if name == "test_header_param":
            return [text(type="text", text=f"region: {arguments.get('region')}")]
        if name == "test_sampling":
            result = await session.create_message(
                messages=[
                    types.SamplingMessage(role="user", content=text(type="text", text=arguments["prompt"]))
                ],
                max_tokens=100,
                related_request_id=rid,
            )
            answer = result.content.text if isinstance(result.content, types.TextContent) else str(result.content)
            return [text(type="text", text=f"LLM response: {answer}")]
        if name == "test_elicitation":
            schema = {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            }
            result = await session.elicit_form(arguments["message"], schema, related_request_id=rid)
            return [text(type="text", text=f"User response: action={result.action}, content={json.dumps(result.content)}")]
        if name in ("test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
            schema = SEP1034_SCHEMA if name.endswith("defaults") else SEP1330_SCHEMA
            result = await session.elicit_form("Please review these fields", schema, related_request_id=rid)
            return [
                text(
                    type="text",
                    text=f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}",
                )
            ]
        if name == "test_reconnection":
            # Over Streamable HTTP this closes the answer stream so that the client has to
            # resume with Last-Event-ID; over stdio there is no stream to close.
            if ctx.close_sse_stream is not None:
                await anyio.sleep(0.05)
                await ctx.close_sse_stream()
                await anyio.sleep(0.2)
            return [text(type="text", text="Reconnection test completed successfully")]
        raise ValueError(f"Unknown tool: {name}")

    @server.list_prompts()
    async def list_prompts() -> list[types.Prompt]:
        return PROMPTS

    @server.get_prompt()
    async def get_prompt(name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        args = arguments or {}

        def user(content) -> types.PromptMessage:
            return types.PromptMessage(role="user", content=content)

        if name == "test_simple_prompt":
            messages = [user(types.TextContent(type="text", text="This is a simple prompt for testing."))]
        elif name == "test_input_required_result_prompt":
            session = server.request_context.session
            schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
            r = await session.elicit_form(
                "What context should the prompt use?", schema, related_request_id=server.request_context.request_id
            )
            ctx = (r.content or {}).get("context", "")
            messages = [user(types.TextContent(type="text", text=f"Use this context: {ctx}"))]
        elif name == "test_prompt_with_arguments":
            said = f"Prompt with arguments: arg1='{args.get('arg1', '')}', arg2='{args.get('arg2', '')}'"
            messages = [user(types.TextContent(type="text", text=said))]
        elif name == "test_prompt_with_embedded_resource":
            resource = types.TextResourceContents(
                uri=args.get("resourceUri", "test://example-resource"),
                mimeType="text/plain",
                text="Embedded resource content for testing.",
            )
            messages = [
                user(types.EmbeddedResource(type="resource", resource=resource)),
                user(types.TextContent(type="text", text="Please process the embedded resource above.")),
            ]
        elif name == "test_prompt_with_image":
            messages = [
                user(types.ImageContent(type="image", data=PNG, mimeType="image/png")),
                user(types.TextContent(type="text", text="Please analyze the image above.")),
            ]
        else:
            raise ValueError(f"Unknown prompt: {name}")
        return types.GetPromptResult(messages=messages)

    @server.list_resources()
    async def list_resources() -> list[types.Resource]:
        return RESOURCES

    @server.list_resource_templates()
    async def list_templates() -> list[types.ResourceTemplate]:
        return [
            types.ResourceTemplate(
                uriTemplate="test://template/{id}/data",
                name="template-data",
                description="Data for an id",
                mimeType="application/json",
            )
        ]

    @server.read_resource()
    async def read_resource(uri: AnyUrl):
        from mcp.server.lowlevel.helper_types import ReadResourceContents

        value = str(uri)
        if value == "test://static-text":
            return [ReadResourceContents(content="This is the content of the static text resource.", mime_type="text/plain")]
        if value == "test://static-binary":
            return [ReadResourceContents(content=base64.b64decode(PNG), mime_type="image/png")]
        if value == "test://watched-resource":
            return [ReadResourceContents(content="Watched resource content.", mime_type="text/plain")]
        prefix, suffix = "test://template/", "/data"
        if value.startswith(prefix) and value.endswith(suffix):
            ident = value[len(prefix) : -len(suffix)]
            body = json.dumps({"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"})
            return [ReadResourceContents(content=body, mime_type="application/json")]
        raise ValueError(f"Unknown resource: {value}")

    @server.subscribe_resource()
    async def subscribe(uri: AnyUrl) -> None:
        subscriptions.add(str(uri))
        await server.request_context.session.send_resource_updated(uri)

    @server.unsubscribe_resource()
    async def unsubscribe(uri: AnyUrl) -> None:
        subscriptions.discard(str(uri))

    @server.set_logging_level()
    async def set_level(level: types.LoggingLevel) -> None:
        return None

    @server.completion()
    async def complete(ref, argument, context) -> types.Completion:
        candidates = ["paris", "park", "party", "test", "testing"]
        values = [c for c in candidates if c.startswith(argument.value)]
        return types.Completion(values=values, total=len(values), hasMore=False)

    base_capabilities = server.get_capabilities

    def capabilities(notification_options, experimental):
        caps = base_capabilities(notification_options, experimental)
        if caps.resources is not None:
            caps.resources.subscribe = True
        return caps

    server.get_capabilities = capabilities
    return server


class MemoryEventStore:
    """Bounded in-memory event store so that answer streams can be resumed."""

    def __init__(self, limit: int = 1000) -> None:
        self.events: deque = deque(maxlen=limit)
        self.counter = 0

    async def store_event(self, stream_id, message):
        self.counter += 1
        event_id = str(self.counter)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        from mcp.server.streamable_http import EventMessage

        stream_id = None
        found = False
        for event_id, sid, message in list(self.events):
            if event_id == last_event_id:
                stream_id, found = sid, True
                continue
            if found and sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def serve_http(server: Server, port: int) -> None:
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.routing import Route

    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    manager = StreamableHTTPSessionManager(
        app=server, event_store=MemoryEventStore(), security_settings=security, retry_interval=500
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with manager.run():
            yield

    class Endpoint:
        async def __call__(self, scope, receive, send):
            await manager.handle_request(scope, receive, send)

    app = Starlette(routes=[Route("/mcp", endpoint=Endpoint(), methods=["GET", "POST", "DELETE"])], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, help="serve Streamable HTTP on this port instead of stdio")
    args = parser.parse_args()
    server = build_server()
    if args.port:
        serve_http(server, args.port)
        return

    from mcp.server.stdio import stdio_server

    async def run() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options(NotificationOptions(), {}))

    anyio.run(run)


if __name__ == "__main__":
    sys.exit(main())
