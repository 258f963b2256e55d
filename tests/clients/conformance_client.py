#!/usr/bin/env python3
"""Client for the conformance suite's client scenarios, reaching the scenario's server through
`mcp-proxy URL`.

The suite starts its scenario server and runs `conformance_client.py PROXY SERVER_URL` with
MCP_CONFORMANCE_SCENARIO set. This script is a real MCP client (the official Python SDK) that
starts `PROXY SERVER_URL` on stdio, so what the suite's server sees on the wire is the proxy's
Streamable HTTP client. The SDK client does what a host would: it lists tools and calls them,
answers elicitation by accepting the schema's defaults (SEP-1034), and exits 0 when done.

For the authorization scenarios (auth/*), what the suite hands to a client as configuration
(MCP_CONFORMANCE_CONTEXT: a pre-registered client, client credentials, a Client ID Metadata
Document URL) becomes the proxy's flags, as a user would write them; signing in goes through
$BROWSER like any other sign-in.
"""

import json

import asyncio
import os
import sys
from datetime import timedelta

import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def elicit_with_defaults(context, params: types.ElicitRequestParams):
    schema = getattr(params, "requestedSchema", None) or {}
    content = {
        name: prop["default"]
        for name, prop in (schema.get("properties") or {}).items()
        if isinstance(prop, dict) and "default" in prop
    }
    return types.ElicitResult(action="accept", content=content)


def arguments_for(tool: types.Tool) -> dict:
    """Plausible arguments from the tool's input schema: numbers get 2 and 3, strings 'x'."""
    props = (tool.inputSchema or {}).get("properties") or {}
    values = iter([2, 3, 5, 7])
    out = {}
    for name, prop in props.items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        if kind in ("number", "integer"):
            out[name] = next(values, 1)
        elif kind == "boolean":
            out[name] = True
        else:
            out[name] = "x"
    return out


# The Client ID Metadata Document URL the suite expects (it is never fetched).
CIMD_URL = "https://conformance-test.local/client-metadata.json"


def oauth_flags(scenario: str, context: dict) -> list:
    """The proxy's flags for what the scenario configures on the client side."""
    info = None
    if scenario in ("auth/basic-cimd", "auth/offline-access-scope"):
        return ["--oauth-client-metadata-url", CIMD_URL]
    if scenario == "auth/pre-registration":
        info = {"client_id": context["client_id"], "client_secret": context["client_secret"]}
    elif scenario == "auth/client-credentials-basic":
        info = {
            "client_id": context["client_id"],
            "client_secret": context["client_secret"],
            "grant_type": "client_credentials",
        }
    elif scenario == "auth/client-credentials-jwt":
        info = {
            "client_id": context["client_id"],
            "private_key": context["private_key_pem"],
            "grant_type": "client_credentials",
        }
        if context.get("signing_algorithm"):
            info["algorithm"] = context["signing_algorithm"]
    return ["--static-oauth-client-info", json.dumps(info)] if info else []


async def main(proxy: str, url: str) -> int:
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    args = [*oauth_flags(scenario, context), url]
    params = StdioServerParameters(command=proxy, args=args, env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(
            read,
            write,
            read_timeout_seconds=timedelta(seconds=20),
            elicitation_callback=elicit_with_defaults,
        ) as session:
            await session.initialize()
            if scenario == "initialize":
                return 0
            tools = (await session.list_tools()).tools
            for tool in tools:
                result = await session.call_tool(tool.name, arguments_for(tool))
                text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
                print(f"{tool.name}: {'error' if result.isError else 'ok'} {text}", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print("usage: conformance_client.py PROXY SERVER_URL", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[-1])))
