// An MCP client that authenticates with the official TypeScript SDK's own OAuth support
// (@modelcontextprotocol/sdk, pinned in scripts/install-peers): the `authProvider` option of
// StreamableHTTPClientTransport / SSEClientTransport. Discovery is left entirely to the SDK
// (401 WWW-Authenticate resource_metadata -> RFC 9728 metadata -> RFC 8414 metadata -> token),
// so a successful run shows that the server under test (e.g. the proxy) is discoverable.
//
//   node oauth_sdk_client.mjs --url URL [--transport streamable|sse] [--client-id ID
//        --client-secret SECRET] [--expected-issuer I] [--scope "a b"] [--tool NAME] [--args JSON]
//
//   --client-id/--client-secret  client credentials grant (the SDK's ClientCredentialsProvider,
//                                client_secret_basic); --expected-issuer binds them to that AS
//                                (without it the SDK warns on stderr and trusts the discovery)
//   otherwise                    authorization code + PKCE: the SDK registers a public client
//                                (RFC 7591, kept in memory) and tests/clients/browser.py plays
//                                the browser towards a loopback callback http://127.0.0.1:P/callback
//   --scope "a b"                the client metadata scope: always sent for client credentials;
//                                for the code flow the SDK prefers the 401's scope, then PRM's
//   --transport sse              SSEClientTransport (URL = the /sse endpoint)
//
// Stdout, one JSON line per step (never a token): {"event":"token","scope"},
// {"event":"tools","names"}, {"event":"call","tool","isError","text"}; on failure
// {"event":"error","message"} and exit 1. Diagnostics go to stderr.
import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import http from "node:http";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const peers = process.env.MCP_PEERS_NODE ?? fileURLToPath(new URL("../../.peers/node/", import.meta.url));
const require = createRequire(path.join(peers, "package.json"));
const load = (spec) => import(pathToFileURL(require.resolve(spec)).href);
const { Client } = await load("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = await load("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { SSEClientTransport } = await load("@modelcontextprotocol/sdk/client/sse.js");
const { UnauthorizedError } = await load("@modelcontextprotocol/sdk/client/auth.js");
const { ClientCredentialsProvider } = await load("@modelcontextprotocol/sdk/client/auth-extensions.js");

function parseArgs(argv) {
  const o = { url: null, transport: "streamable", clientId: null, clientSecret: null, expectedIssuer: undefined, scope: undefined, tool: null, args: "{}" };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--url": o.url = new URL(v()); break;
      case "--transport": o.transport = v(); break;
      case "--client-id": o.clientId = v(); break;
      case "--client-secret": o.clientSecret = v(); break;
      case "--expected-issuer": o.expectedIssuer = v(); break;
      case "--scope": o.scope = v(); break;
      case "--tool": o.tool = v(); break;
      case "--args": o.args = v(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!o.url) throw new Error("--url URL is required");
  if (!["streamable", "sse"].includes(o.transport)) throw new Error("--transport must be streamable or sse");
  if (!o.clientId !== !o.clientSecret) throw new Error("--client-id and --client-secret go together");
  return o;
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const log = (...a) => console.error("oauth_sdk_client:", ...a);
let callbackServer = null;
let browser = null;

// Report every token the SDK saves (never the token itself).
function reportTokens(provider) {
  const save = provider.saveTokens.bind(provider);
  provider.saveTokens = (tokens) => {
    emit({ event: "token", scope: tokens.scope ?? null });
    return save(tokens);
  };
  return provider;
}

// The loopback callback: resolves with the code once browser.py lands on /callback.
async function startCallback() {
  let settle;
  const code = new Promise((resolve, reject) => (settle = { resolve, reject }));
  code.catch(() => {});
  callbackServer = http.createServer((req, res) => {
    const q = new URL(req.url, "http://127.0.0.1").searchParams;
    if (!req.url.startsWith("/callback")) return res.writeHead(404).end();
    const ok = q.get("code") && q.get("state") === provider.expectedState;
    res.writeHead(ok ? 200 : 400, { "content-type": "text/plain" }).end(ok ? "authorized" : "failed");
    if (ok) settle.resolve(q.get("code"));
    else settle.reject(new Error(`authorization failed: ${q.get("error") ?? (q.get("code") ? "state mismatch" : "no code")}` +
      (q.get("error_description") ? ` (${q.get("error_description")})` : "")));
  });
  await new Promise((resolve, reject) => callbackServer.once("error", reject).listen(0, "127.0.0.1", resolve));
  const redirectUrl = `http://127.0.0.1:${callbackServer.address().port}/callback`;
  // An in-memory OAuthClientProvider (client/auth.js interface), as in the SDK's examples.
  const provider = {
    expectedState: null,
    code,
    get redirectUrl() { return redirectUrl; },
    get clientMetadata() {
      return { client_name: "oauth_sdk_client", redirect_uris: [redirectUrl], grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"], token_endpoint_auth_method: "none", ...(opts.scope ? { scope: opts.scope } : {}) };
    },
    state() { return (this.expectedState = crypto.randomBytes(16).toString("hex")); },
    clientInformation() { return this._client; },
    saveClientInformation(info) { log("registered client", info.client_id); this._client = info; },
    tokens() { return this._tokens; },
    saveTokens(tokens) { this._tokens = tokens; },
    saveCodeVerifier(v) { this._verifier = v; },
    codeVerifier() { return this._verifier; },
    redirectToAuthorization(url) {
      const u = new URL(url);
      log("authorization request: resource =", u.searchParams.get("resource"), "scope =", u.searchParams.get("scope"));
      const script = fileURLToPath(new URL("./browser.py", import.meta.url));
      browser = spawn("python3", [script, u.href], { stdio: ["ignore", "ignore", "inherit"] });
      browser.on("exit", (rc) => {
        browser = null;
        settle.reject(new Error(`browser.py exited ${rc} without delivering a code`));
      });
    },
  };
  return reportTokens(provider);
}

const makeTransport = (provider) =>
  opts.transport === "sse"
    ? new SSEClientTransport(opts.url, { authProvider: provider })
    : new StreamableHTTPClientTransport(opts.url, { authProvider: provider });

let opts;
let transport = null;
async function main() {
  opts = parseArgs(process.argv.slice(2));
  const toolArgs = JSON.parse(opts.args);
  const provider = opts.clientId
    ? reportTokens(new ClientCredentialsProvider({ clientId: opts.clientId, clientSecret: opts.clientSecret,
        expectedIssuer: opts.expectedIssuer, scope: opts.scope, clientName: "oauth_sdk_client" }))
    : await startCallback();
  const client = new Client({ name: "oauth_sdk_client", version: "1.0.0" }, { capabilities: {} });
  transport = makeTransport(provider);
  try {
    await client.connect(transport);
  } catch (e) {
    // The code flow: the SDK has sent the browser off and throws UnauthorizedError; finish with
    // the code from the callback, then reconnect on a fresh transport (as simpleOAuthClient.js).
    if (!(e instanceof UnauthorizedError) || opts.clientId) throw e;
    const code = await provider.code;
    await transport.finishAuth(code);
    await transport.close().catch(() => {});
    transport = makeTransport(provider);
    await client.connect(transport);
  }
  const { tools } = await client.listTools();
  emit({ event: "tools", names: tools.map((t) => t.name) });
  if (opts.tool) {
    const r = await client.callTool({ name: opts.tool, arguments: toolArgs });
    const text = (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
    emit({ event: "call", tool: opts.tool, isError: !!r.isError, text });
  }
}

let rc = 0;
try {
  await main();
} catch (e) {
  log(e?.stack ?? e);
  emit({ event: "error", message: String(e?.message ?? e) });
  rc = 1;
}
await transport?.close().catch(() => {});
callbackServer?.close();
browser?.kill();
process.exit(rc);
