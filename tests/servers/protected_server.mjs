// An OAuth-protected MCP server for the proxy's OAuth client tests: the official TypeScript SDK
// (@modelcontextprotocol/sdk, pinned in scripts/install-peers) over Streamable HTTP, stateful
// sessions, at http://127.0.0.1:P/mcp. It accepts only JWT access tokens (RFC 9068, as
// tests/servers/oauth_as.mjs issues them with `resource`) signed by the issuer's JWKS, with
// iss = the issuer, aud = its resource http://127.0.0.1:P/mcp, and exp in the future (no clock
// tolerance). A session is not bound to a token: a refreshed token may go on with it.
//
//   node protected_server.mjs --port P --issuer URL [--scopes "a b"] [--required-scope S] [--log FILE]
//
//   --port P              listen on 127.0.0.1:P (0 = any free port)
//   --issuer URL          the authorization server (e.g. http://127.0.0.1:AS_PORT); its JWKS is
//                         found through its RFC 8414 / OpenID metadata at first use, else I/jwks
//   --scopes "a b"        the scopes asked for in 401 challenges (default "mcp:read mcp:write")
//   --required-scope S    the scope the tool admin_tool needs (default "mcp:admin")
//   --log FILE            also append every stdout line to FILE
//
// Endpoints:
//   /mcp                                      POST/GET/DELETE, Streamable HTTP
//   /.well-known/oauth-protected-resource/mcp  RFC 9728 metadata (also without the /mcp suffix):
//     {"resource":"http://127.0.0.1:P/mcp","authorization_servers":[issuer],
//      "scopes_supported":[--scopes..., --required-scope],"bearer_methods_supported":["header"]}
//
// Answers:
//   no token           401  WWW-Authenticate: Bearer resource_metadata="<PRM url>", scope="<--scopes>"
//   bad/expired token  401  WWW-Authenticate: Bearer error="invalid_token", error_description="...",
//                           resource_metadata="...", scope="..."
//   tools/call admin_tool without the required scope
//                      403  WWW-Authenticate: Bearer error="insufficient_scope",
//                           scope="<token's scopes + required>", resource_metadata="...", error_description="..."
// Tools: whoami -> text JSON {"sub","client_id","scope","aud","count"} (count: whoami calls so far,
// server-wide), echo {text} -> text, admin_tool -> "admin ok".
//
// Stdout: one JSON line per event, never a token:
//   {"event":"listening","port":P,"url":"http://127.0.0.1:P/mcp","issuer":I}
//   {"event":"request","method":"POST","rpc":["tools/call"],"tool":"whoami","session":...,
//    "auth":"ok"|"missing"|"invalid"|"expired"|"insufficient_scope","status":401|403 (rejections),
//    "sub","client_id","jti","scope","reason" (why a token was rejected)}
import { createRequire } from "node:module";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const peers = process.env.MCP_PEERS_NODE ?? fileURLToPath(new URL("../../.peers/node/", import.meta.url));
const require = createRequire(path.join(peers, "package.json"));
const load = (spec) => import(pathToFileURL(require.resolve(spec)).href);
const { Server } = await load("@modelcontextprotocol/sdk/server/index.js");
const { StreamableHTTPServerTransport } = await load("@modelcontextprotocol/sdk/server/streamableHttp.js");
const types = await load("@modelcontextprotocol/sdk/types.js");
const express = (await load("express")).default;
const jose = await load("jose");

function parseArgs(argv) {
  const o = { port: 0, issuer: null, scopes: "mcp:read mcp:write", requiredScope: "mcp:admin", log: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--port": o.port = Number(v()); break;
      case "--issuer": o.issuer = v().replace(/\/+$/, ""); break;
      case "--scopes": o.scopes = v(); break;
      case "--required-scope": o.requiredScope = v(); break;
      case "--log": o.log = v(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!o.issuer) throw new Error("--issuer URL is required");
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const challengeScopes = opts.scopes.split(/\s+/).filter(Boolean);
const supportedScopes = [...new Set([...challengeScopes, opts.requiredScope].filter(Boolean))];

function emit(obj) {
  const line = JSON.stringify(obj);
  process.stdout.write(line + "\n");
  if (opts.log) fs.appendFileSync(opts.log, line + "\n");
}

// --- token validation ---------------------------------------------------------------------

let jwks = null;
async function keySet() {
  if (jwks) return jwks;
  let jwksUri = `${opts.issuer}/jwks`;
  for (const wk of ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]) {
    try {
      const r = await fetch(opts.issuer + wk);
      if (r.ok) {
        const meta = await r.json();
        if (meta.jwks_uri) {
          jwksUri = meta.jwks_uri;
          break;
        }
      }
    } catch {}
  }
  jwks = jose.createRemoteJWKSet(new URL(jwksUri), { cooldownDuration: 1000 });
  return jwks;
}

/** {auth: "ok", claims} | {auth: "missing"|"invalid"|"expired", reason} */
async function authenticate(req, resource) {
  const header = req.get("authorization");
  if (!header) return { auth: "missing" };
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return { auth: "invalid", reason: "not a Bearer authorization header" };
  try {
    const { payload } = await jose.jwtVerify(m[1], await keySet(), {
      issuer: opts.issuer,
      audience: resource,
      typ: "at+jwt",
      requiredClaims: ["exp", "sub"],
    });
    return { auth: "ok", token: m[1], claims: payload };
  } catch (err) {
    if (err instanceof jose.errors.JWTExpired) return { auth: "expired", reason: err.message };
    if (err?.code === "ERR_JWKS_NO_MATCHING_KEY" || err?.code === "ERR_JWKS_TIMEOUT" || err?.name === "TypeError") {
      jwks = null; // the issuer may have restarted, or was not up yet: look it up again next time
    }
    return { auth: "invalid", reason: err?.message ?? String(err) };
  }
}

const quote = (s) => `"${String(s).replace(/["\\]/g, "\\$&")}"`;

// --- MCP -----------------------------------------------------------------------------------

let whoamiCount = 0;

function newServer() {
  const server = new Server({ name: "oauth-protected-server", version: "1.0.0" }, { capabilities: { tools: {} } });
  server.setRequestHandler(types.ListToolsRequestSchema, async () => ({
    tools: [
      {
        name: "whoami",
        description: "The caller's token: sub, client_id, scope, and how many whoami calls so far",
        inputSchema: { type: "object", properties: {} },
      },
      {
        name: "echo",
        description: "Echo the text back",
        inputSchema: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
      },
      {
        name: "admin_tool",
        description: `Needs the scope ${opts.requiredScope}`,
        inputSchema: { type: "object", properties: {} },
      },
    ],
  }));
  server.setRequestHandler(types.CallToolRequestSchema, async (request, extra) => {
    const claims = extra.authInfo?.extra?.claims ?? {};
    switch (request.params.name) {
      case "whoami": {
        whoamiCount += 1;
        const me = { sub: claims.sub, client_id: claims.client_id, scope: claims.scope ?? "", aud: claims.aud, count: whoamiCount };
        return { content: [{ type: "text", text: JSON.stringify(me) }], structuredContent: me };
      }
      case "echo":
        return { content: [{ type: "text", text: String(request.params.arguments?.text ?? "") }] };
      case "admin_tool":
        return { content: [{ type: "text", text: "admin ok" }] };
      default:
        return { content: [{ type: "text", text: `unknown tool ${request.params.name}` }], isError: true };
    }
  });
  return server;
}

const transports = new Map();

const app = express();
app.use(express.json({ limit: "4mb" }));

let port = opts.port;
const resourceUrl = () => `http://127.0.0.1:${port}/mcp`;
const prmUrl = () => `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`;

function metadata(_req, res) {
  res.json({
    resource: resourceUrl(),
    authorization_servers: [opts.issuer],
    scopes_supported: supportedScopes,
    bearer_methods_supported: ["header"],
    resource_name: "oauth-protected-server",
  });
}
app.get("/.well-known/oauth-protected-resource/mcp", metadata);
app.get("/.well-known/oauth-protected-resource", metadata);

function challenge(res, status, { error, description, scopes }) {
  const parts = [];
  if (error) parts.push(`error=${quote(error)}`);
  if (description) parts.push(`error_description=${quote(description)}`);
  parts.push(`resource_metadata=${quote(prmUrl())}`);
  if (scopes?.length) parts.push(`scope=${quote(scopes.join(" "))}`);
  res.set("WWW-Authenticate", `Bearer ${parts.join(", ")}`);
  res.status(status).json(error ? { error, error_description: description } : { error: "unauthorized" });
}

app.all("/mcp", async (req, res) => {
  const messages = req.method === "POST" ? [req.body].flat().filter((m) => m && typeof m === "object") : [];
  const rpc = messages.map((m) => m.method ?? "response");
  const calls = messages.filter((m) => m.method === "tools/call").map((m) => m.params?.name);
  const line = {
    event: "request",
    method: req.method,
    rpc,
    tool: calls.length ? calls.join(",") : undefined,
    session: req.get("mcp-session-id"),
  };
  const a = await authenticate(req, resourceUrl());
  line.auth = a.auth;
  if (a.auth !== "ok") {
    line.status = 401;
    line.reason = a.reason;
    emit(line);
    if (a.auth === "missing") return challenge(res, 401, { scopes: challengeScopes });
    return challenge(res, 401, { error: "invalid_token", description: a.auth === "expired" ? "the access token expired" : "the access token is invalid", scopes: challengeScopes });
  }
  const { claims } = a;
  const granted = typeof claims.scope === "string" ? claims.scope.split(" ").filter(Boolean) : [];
  Object.assign(line, { sub: claims.sub, client_id: claims.client_id, jti: claims.jti, scope: claims.scope });
  if (opts.requiredScope && calls.includes("admin_tool") && !granted.includes(opts.requiredScope)) {
    line.auth = "insufficient_scope";
    line.status = 403;
    emit(line);
    return challenge(res, 403, {
      error: "insufficient_scope",
      description: `admin_tool needs the scope ${opts.requiredScope}`,
      scopes: [...new Set([...granted, opts.requiredScope])],
    });
  }
  emit(line);
  req.auth = {
    token: a.token,
    clientId: claims.client_id,
    scopes: granted,
    expiresAt: claims.exp,
    resource: new URL(resourceUrl()),
    extra: { claims },
  };

  try {
    const sid = req.get("mcp-session-id");
    let transport = sid ? transports.get(sid) : undefined;
    if (sid && !transport) {
      return res.status(404).json({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null });
    }
    if (!transport) {
      if (req.method !== "POST" || !messages.some((m) => types.isInitializeRequest(m))) {
        return res.status(400).json({ jsonrpc: "2.0", error: { code: -32000, message: "Bad Request: no session id" }, id: null });
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => crypto.randomUUID(),
        onsessioninitialized: (id) => transports.set(id, transport),
      });
      transport.onclose = () => {
        if (transport.sessionId) transports.delete(transport.sessionId);
      };
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
  } catch (err) {
    console.error("request failed:", err);
    if (!res.headersSent) {
      res.status(500).json({ jsonrpc: "2.0", error: { code: -32603, message: "Internal error" }, id: null });
    }
  }
});

const listener = app.listen(opts.port, "127.0.0.1", () => {
  port = listener.address().port;
  emit({ event: "listening", port, url: resourceUrl(), issuer: opts.issuer });
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    listener.close();
    process.exit(0);
  });
}
