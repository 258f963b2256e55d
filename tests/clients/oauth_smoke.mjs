// End-to-end check of the OAuth test peers, without the proxy: starts
// tests/servers/oauth_as.mjs and tests/servers/protected_server.mjs on free ports, then plays an
// MCP OAuth client by hand: 401 discovery (RFC 9728 / 8414), dynamic registration, authorization
// code + PKCE through tests/clients/browser.py into a loopback callback listener, token exchange
// with `resource`, MCP initialize + tools/call whoami, refresh (with rotation and reuse
// detection), step-up 403 on admin_tool, expiry with a short TTL, client credentials
// (client_secret_basic, client_secret_post, private_key_jwt), introspection, revocation, --deny.
//
//   node tests/clients/oauth_smoke.mjs        (one line per check; exits 1 if any failed)
import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import http from "node:http";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const peers = process.env.MCP_PEERS_NODE ?? path.join(repo, ".peers/node");
const require = createRequire(path.join(peers, "package.json"));
const jose = await import(pathToFileURL(require.resolve("jose")).href);

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
  ok ? passed++ : failed++;
}

const children = [];
/** Spawn a peer, collect its JSON stdout lines, resolve once it printed "listening". */
function start(script, args) {
  const child = spawn(process.execPath, [path.join(repo, script), ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  const events = [];
  child.stderr.on("data", (d) => process.env.SMOKE_VERBOSE && process.stderr.write(d));
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).on("line", (l) => {
      const e = JSON.parse(l);
      events.push(e);
      if (e.event === "listening") resolve({ child, events, port: e.port });
    });
    child.on("exit", (code) => reject(new Error(`${script} exited ${code}`)));
  });
}

function freePort() {
  return new Promise((resolve) => {
    const s = http.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A loopback callback listener, like the proxy's: resolves with the callback's query. */
function callbackListener() {
  let resolveQuery;
  const query = new Promise((r) => (resolveQuery = r));
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, "http://127.0.0.1");
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<p>You can close this window.</p>");
    resolveQuery(Object.fromEntries(u.searchParams));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, port: server.address().port, query })));
}

function browser(url) {
  return new Promise((resolve) => {
    const p = spawn("python3", [path.join(repo, "tests/clients/browser.py"), url], { stdio: ["ignore", "inherit", process.env.SMOKE_VERBOSE ? "inherit" : "ignore"] });
    p.on("exit", (code) => resolve(code));
  });
}

const form = (o) => new URLSearchParams(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)));
async function tokenRequest(meta, params, auth) {
  const headers = { "content-type": "application/x-www-form-urlencoded" };
  if (auth) headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(auth[0])}:${encodeURIComponent(auth[1])}`).toString("base64")}`;
  const r = await fetch(meta.token_endpoint, { method: "POST", headers, body: form(params) });
  return { status: r.status, body: await r.json() };
}

async function authorize(meta, client, { resource, scope, redirectPort }) {
  const cb = await callbackListener();
  const verifier = crypto.randomBytes(32).toString("base64url");
  const challenge = crypto.createHash("sha256").update(verifier).digest("base64url");
  const state = crypto.randomBytes(8).toString("hex");
  const redirectUri = `http://127.0.0.1:${cb.port}/callback`;
  const url = new URL(meta.authorization_endpoint);
  url.search = form({ response_type: "code", client_id: client.client_id, redirect_uri: redirectUri, scope, state, code_challenge: challenge, code_challenge_method: "S256", resource });
  const code = await browser(url.href);
  const q = await Promise.race([cb.query, new Promise((r) => setTimeout(() => r({ timeout: true }), 5000))]);
  cb.server.close();
  return { browserExit: code, q, state, verifier, redirectUri };
}

async function mcp(url, token, body, sid) {
  const headers = { "content-type": "application/json", accept: "application/json, text/event-stream" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (sid) headers["mcp-session-id"] = sid;
  const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await r.text();
  let json;
  const data = text.split("\n").find((l) => l.startsWith("data: "));
  try { json = JSON.parse(data ? data.slice(6) : text); } catch {}
  return { status: r.status, www: r.headers.get("www-authenticate"), sid: r.headers.get("mcp-session-id"), json };
}

async function session(url, token) {
  const init = await mcp(url, token, { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "smoke", version: "1" } } });
  if (init.status === 200) await mcp(url, token, { jsonrpc: "2.0", method: "notifications/initialized" }, init.sid);
  return init;
}
const callTool = (url, token, sid, name, args = {}) => mcp(url, token, { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name, arguments: args } }, sid);

try {
  const mcpPort = await freePort();
  const resource = `http://127.0.0.1:${mcpPort}/mcp`;
  const as = await start("tests/servers/oauth_as.mjs", ["--port", "0", "--resource", resource]);
  const issuer = `http://127.0.0.1:${as.port}`;
  const rs = await start("tests/servers/protected_server.mjs", ["--port", String(mcpPort), "--issuer", issuer]);

  // 1. discovery from a 401
  const r401 = await mcp(resource, null, { jsonrpc: "2.0", id: 1, method: "initialize", params: {} });
  check("401 without token", r401.status === 401, r401.www);
  const rm = /resource_metadata="([^"]+)"/.exec(r401.www ?? "")?.[1];
  const prm = await (await fetch(rm)).json();
  check("PRM names the resource and issuer", prm.resource === resource && prm.authorization_servers[0] === issuer, JSON.stringify(prm));
  const prmRoot = await (await fetch(`http://127.0.0.1:${mcpPort}/.well-known/oauth-protected-resource`)).json();
  check("PRM at the root path too", prmRoot.resource === resource);
  const meta = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
  check("RFC 8414 metadata", meta.issuer === issuer && meta.code_challenge_methods_supported?.includes("S256") && meta.authorization_response_iss_parameter_supported === true, `registration ${meta.registration_endpoint}`);
  const oidc = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  check("OpenID discovery", oidc.issuer === issuer && oidc.jwks_uri);

  // 2. dynamic registration of a public client (a port-less loopback redirect, as some clients do)
  const reg = await fetch(meta.registration_endpoint, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_name: "smoke", redirect_uris: ["http://127.0.0.1/callback"], grant_types: ["authorization_code", "refresh_token"], response_types: ["code"], token_endpoint_auth_method: "none", scope: "mcp:read mcp:write mcp:admin" }),
  });
  const pub = await reg.json();
  check("register public client", reg.status === 201 && pub.client_id && !pub.client_secret, `${reg.status} ${pub.client_id}`);

  // 3. authorization code + PKCE through browser.py, redirect on another loopback port
  const scope = /scope="([^"]+)"/.exec(r401.www)?.[1];
  const a = await authorize(meta, pub, { resource, scope });
  check("browser.py exit 0", a.browserExit === 0);
  check("callback has code, state, iss", a.q.code && a.q.state === a.state && a.q.iss === issuer, JSON.stringify({ ...a.q, code: a.q.code && "…" }));

  // 4. code exchange with resource
  const t1 = await tokenRequest(meta, { grant_type: "authorization_code", code: a.q.code, redirect_uri: a.redirectUri, code_verifier: a.verifier, client_id: pub.client_id, resource });
  const c1 = t1.body.access_token ? jose.decodeJwt(t1.body.access_token) : {};
  const h1 = t1.body.access_token ? jose.decodeProtectedHeader(t1.body.access_token) : {};
  check("code exchange gives JWT + refresh token", t1.status === 200 && h1.typ === "at+jwt" && !!t1.body.refresh_token, `${t1.status} scope=${t1.body.scope} typ=${h1.typ}`);
  check("aud = resource, sub = user-1", c1.aud === resource && c1.sub === "user-1" && c1.client_id === pub.client_id && c1.iss === issuer, JSON.stringify(c1));

  // 5. MCP with the token
  const s = await session(resource, t1.body.access_token);
  check("initialize with token", s.status === 200 && !!s.sid);
  const w = await callTool(resource, t1.body.access_token, s.sid, "whoami");
  const me = JSON.parse(w.json?.result?.content?.[0]?.text ?? "{}");
  check("whoami", me.sub === "user-1" && me.client_id === pub.client_id && me.count === 1, JSON.stringify(me));
  const e = await callTool(resource, t1.body.access_token, s.sid, "echo", { text: "hi" });
  check("echo", e.json?.result?.content?.[0]?.text === "hi");
  const adm = await callTool(resource, t1.body.access_token, s.sid, "admin_tool");
  check("admin_tool 403 insufficient_scope", adm.status === 403 && /error="insufficient_scope"/.test(adm.www) && /scope="[^"]*mcp:admin/.test(adm.www), adm.www);
  const badTok = await callTool(resource, t1.body.access_token.slice(0, -4) + "AAAA", s.sid, "whoami");
  check("tampered token 401 invalid_token", badTok.status === 401 && /invalid_token/.test(badTok.www));

  // 6. refresh (rotation for public clients; reuse detection)
  const t2 = await tokenRequest(meta, { grant_type: "refresh_token", refresh_token: t1.body.refresh_token, client_id: pub.client_id, resource });
  const c2 = t2.body.access_token ? jose.decodeJwt(t2.body.access_token) : {};
  check("refresh gives new JWT for resource", t2.status === 200 && c2.aud === resource && c2.jti !== c1.jti, `${t2.status} ${JSON.stringify(t2.body.error ?? "")}`);
  check("refresh token rotated", !!t2.body.refresh_token && t2.body.refresh_token !== t1.body.refresh_token);
  const w2 = await callTool(resource, t2.body.access_token, s.sid, "whoami");
  check("same session with refreshed token", JSON.parse(w2.json?.result?.content?.[0]?.text ?? "{}").count === 2);
  const t3 = await tokenRequest(meta, { grant_type: "refresh_token", refresh_token: t2.body.refresh_token, client_id: pub.client_id });
  check("refresh without resource keeps aud", t3.status === 200 && jose.decodeJwt(t3.body.access_token).aud === resource);
  const reuse = await tokenRequest(meta, { grant_type: "refresh_token", refresh_token: t1.body.refresh_token, client_id: pub.client_id, resource });
  check("reused refresh token rejected", reuse.status === 400 && reuse.body.error === "invalid_grant");
  const afterReuse = await tokenRequest(meta, { grant_type: "refresh_token", refresh_token: t3.body.refresh_token, client_id: pub.client_id, resource });
  check("reuse revoked the grant", afterReuse.status === 400, afterReuse.body.error);

  // 7. step-up: authorize again with mcp:admin, then admin_tool works
  const a2 = await authorize(meta, pub, { resource, scope: "mcp:read mcp:write mcp:admin" });
  const t4 = await tokenRequest(meta, { grant_type: "authorization_code", code: a2.q.code, redirect_uri: a2.redirectUri, code_verifier: a2.verifier, client_id: pub.client_id, resource });
  const adm2 = await callTool(resource, t4.body.access_token, s.sid, "admin_tool");
  check("admin_tool after step-up", adm2.json?.result?.content?.[0]?.text === "admin ok", `scope=${t4.body.scope}`);

  // a reused code is rejected and revokes what it gave
  const a3 = await authorize(meta, pub, { resource, scope: "mcp:read" });
  const t6 = await tokenRequest(meta, { grant_type: "authorization_code", code: a3.q.code, redirect_uri: a3.redirectUri, code_verifier: a3.verifier, client_id: pub.client_id, resource });
  const bad = await tokenRequest(meta, { grant_type: "authorization_code", code: a3.q.code, redirect_uri: a3.redirectUri, code_verifier: a3.verifier, client_id: pub.client_id, resource });
  check("code reuse rejected", t6.status === 200 && bad.status === 400 && bad.body.error === "invalid_grant");
  const t7 = await tokenRequest(meta, { grant_type: "refresh_token", refresh_token: t6.body.refresh_token, client_id: pub.client_id, resource });
  check("code reuse revoked its refresh token", t7.status === 400 && t7.body.error === "invalid_grant");

  // 8. introspection and revocation of the refresh token, by the public client
  const intro = await fetch(meta.introspection_endpoint, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form({ token: t4.body.refresh_token, client_id: pub.client_id }) });
  const ib = await intro.json();
  check("introspect refresh token", intro.status === 200 && ib.active === true && ib.sub === "user-1", JSON.stringify(ib));
  const introJwt = await fetch(meta.introspection_endpoint, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form({ token: t4.body.access_token, client_id: pub.client_id }) });
  check("JWT access token not introspectable (quirk)", introJwt.status === 400, JSON.stringify(await introJwt.json()));
  const rev = await fetch(meta.revocation_endpoint, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form({ token: t4.body.refresh_token, client_id: pub.client_id }) });
  check("revoke refresh token", rev.status === 200);
  const t5 = await tokenRequest(meta, { grant_type: "refresh_token", refresh_token: t4.body.refresh_token, client_id: pub.client_id, resource });
  check("revoked refresh token rejected", t5.status === 400 && t5.body.error === "invalid_grant");

  // 9. confidential client: client_credentials with basic and post
  const cr = await fetch(meta.registration_endpoint, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ client_name: "svc", redirect_uris: [], grant_types: ["client_credentials"], response_types: [], token_endpoint_auth_method: "client_secret_basic" }) });
  const conf = await cr.json();
  check("register confidential client", cr.status === 201 && !!conf.client_secret, `${cr.status} ${conf.error_description ?? ""}`);
  const cc1 = await tokenRequest(meta, { grant_type: "client_credentials", resource, scope: "mcp:read" }, [conf.client_id, conf.client_secret]);
  const ccc = cc1.body.access_token ? jose.decodeJwt(cc1.body.access_token) : {};
  check("client_credentials basic", cc1.status === 200 && ccc.aud === resource && ccc.sub === conf.client_id && !cc1.body.refresh_token, `${cc1.status} ${JSON.stringify(cc1.body.error_description ?? ccc)}`);
  const s2 = await session(resource, cc1.body.access_token);
  const w3 = await callTool(resource, cc1.body.access_token, s2.sid, "whoami");
  check("whoami with client_credentials token", JSON.parse(w3.json?.result?.content?.[0]?.text ?? "{}").sub === conf.client_id);
  const cr2 = await fetch(meta.registration_endpoint, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ redirect_uris: [], grant_types: ["client_credentials"], response_types: [], token_endpoint_auth_method: "client_secret_post" }) });
  const conf2 = await cr2.json();
  const cc2 = await tokenRequest(meta, { grant_type: "client_credentials", resource, client_id: conf2.client_id, client_secret: conf2.client_secret });
  check("client_credentials post", cc2.status === 200 && jose.decodeJwt(cc2.body.access_token).aud === resource, `${cc2.status} ${cc2.body.error_description ?? ""}`);
  const wrong = await tokenRequest(meta, { grant_type: "client_credentials", resource }, [conf.client_id, "wrong"]);
  check("wrong secret rejected", wrong.status === 401 && wrong.body.error === "invalid_client");

  // 10. private_key_jwt
  const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
  const pubJwk = { ...(await jose.exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  const cr3 = await fetch(meta.registration_endpoint, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ redirect_uris: [], grant_types: ["client_credentials"], response_types: [], token_endpoint_auth_method: "private_key_jwt", token_endpoint_auth_signing_alg: "ES256", jwks: { keys: [pubJwk] } }) });
  const conf3 = await cr3.json();
  check("register private_key_jwt client", cr3.status === 201, conf3.error_description ?? "");
  const assertion = await new jose.SignJWT({}).setProtectedHeader({ alg: "ES256", kid: "k1" }).setIssuer(conf3.client_id).setSubject(conf3.client_id).setAudience(issuer).setJti(crypto.randomUUID()).setIssuedAt().setExpirationTime("2m").sign(privateKey);
  const cc3 = await tokenRequest(meta, { grant_type: "client_credentials", resource, client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: assertion });
  check("client_credentials private_key_jwt", cc3.status === 200 && jose.decodeJwt(cc3.body.access_token).aud === resource, `${cc3.status} ${cc3.body.error_description ?? ""}`);

  // 11. wrong resource, missing PKCE
  const wr = await tokenRequest(meta, { grant_type: "client_credentials", resource: "http://127.0.0.1:1/other" }, [conf.client_id, conf.client_secret]);
  check("unknown resource invalid_target", wr.status === 400 && wr.body.error === "invalid_target");
  const noPkce = await fetch(`${meta.authorization_endpoint}?${form({ response_type: "code", client_id: pub.client_id, redirect_uri: "http://127.0.0.1:5555/callback", state: "s", resource })}`, { redirect: "manual" });
  const loc = new URL(noPkce.headers.get("location") ?? "http://x/");
  check("authorization without PKCE -> error redirect", loc.searchParams.get("error") === "invalid_request" && loc.searchParams.get("iss") === issuer, loc.searchParams.get("error_description"));

  // 12. token events on the AS's stdout
  if (process.env.SMOKE_VERBOSE) console.log(as.events.map((x) => JSON.stringify(x)).join("\n"));
  const grants = as.events.filter((x) => x.event === "token").map((x) => x.grant);
  check("AS logged token events", grants.filter((g) => g === "refresh_token").length === 2 && grants.filter((g) => g === "client_credentials").length === 3 && grants.filter((g) => g === "authorization_code").length === 3, grants.join(","));
  const auths = rs.events.filter((x) => x.event === "request").map((x) => x.auth);
  check("RS logged auth outcomes", auths.includes("missing") && auths.includes("invalid") && auths.includes("insufficient_scope") && auths.includes("ok"), [...new Set(auths)].join(","));
  check("no token in logs", !JSON.stringify([...as.events, ...rs.events]).includes(t1.body.access_token.slice(-20)));

  // 13. short TTL -> expired; --deny
  const port2 = await freePort();
  const res2 = `http://127.0.0.1:${port2}/mcp`;
  const as2 = await start("tests/servers/oauth_as.mjs", ["--port", "0", "--resource", res2, "--access-ttl", "1", "--static-client", JSON.stringify({ client_id: "static-1", client_secret: "s3cret", grant_types: ["client_credentials"], redirect_uris: [], response_types: [] })]);
  const iss2 = `http://127.0.0.1:${as2.port}`;
  await start("tests/servers/protected_server.mjs", ["--port", String(port2), "--issuer", iss2]);
  const meta2 = await (await fetch(`${iss2}/.well-known/oauth-authorization-server`)).json();
  const st = await tokenRequest(meta2, { grant_type: "client_credentials", resource: res2 }, ["static-1", "s3cret"]);
  check("static client, ttl 1", st.status === 200 && st.body.expires_in === 1);
  await new Promise((r) => setTimeout(r, 2100));
  const exp = await session(res2, st.body.access_token);
  check("expired token 401 invalid_token", exp.status === 401 && /invalid_token/.test(exp.www), exp.www);
  const wrongAud = await session(res2, t4.body.access_token);
  check("token of another issuer/audience 401", wrongAud.status === 401);

  const as3 = await start("tests/servers/oauth_as.mjs", ["--port", "0", "--resource", res2, "--deny"]);
  const iss3 = `http://127.0.0.1:${as3.port}`;
  const meta3 = await (await fetch(`${iss3}/.well-known/oauth-authorization-server`)).json();
  const pub3 = await (await fetch(meta3.registration_endpoint, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ redirect_uris: ["http://127.0.0.1:1/callback"], grant_types: ["authorization_code", "refresh_token"], token_endpoint_auth_method: "none" }) })).json();
  const d = await authorize(meta3, pub3, { resource: res2, scope: "mcp:read" });
  check("--deny gives access_denied with state and iss", d.q.error === "access_denied" && d.q.state === d.state && d.q.iss === iss3, JSON.stringify(d.q));
} catch (err) {
  check("smoke run", false, err.stack);
} finally {
  for (const c of children) c.kill("SIGTERM");
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
