// A real OAuth 2.1 / OpenID Connect authorization server for the proxy's OAuth client tests,
// built on `oidc-provider` (pinned in scripts/install-peers). Login and consent are automatic:
// GETting the authorization URL leads through 303 redirects only (keep cookies) to the client's
// redirect_uri with `code`, `state` and `iss` — the fixed account `user-1` logs in and grants
// every requested scope and resource.
//
//   node oauth_as.mjs --port P --resource URL [--resource URL2 ...] [options]
//
//   --port P              listen on 127.0.0.1:P (0 = any free port); issuer http://127.0.0.1:P
//   --resource URL        a resource indicator (RFC 8707) the server issues tokens for, e.g.
//                         http://127.0.0.1:9000/mcp; repeatable; `*` accepts any absolute URI
//   --scopes "a b"        the resource's scopes (default "mcp:read mcp:write mcp:admin")
//   --default-scope "a b" the scope an authorization request without `scope` gets (default: all
//                         of --scopes; oidc-provider would answer access_denied to it otherwise)
//   --access-ttl S        access token lifetime in seconds (default 3600)
//   --refresh-ttl S       refresh token lifetime in seconds (default 86400)
//   --static-client JSON  a pre-registered client (RFC 7591 metadata, with client_id and, for
//                         confidential clients, client_secret); repeatable
//   --deny                the user denies: the redirect carries error=access_denied
//   --default-resource    lenient mode: an authorization or client_credentials request without
//                         `resource` gets the first --resource (by default such a request yields
//                         an opaque access token with no aud, useless at the MCP server). A token
//                         or refresh request without `resource` gets the authorization's one.
//   --log FILE            also append every stdout line to FILE
//
// Endpoints (issuer I = http://127.0.0.1:P):
//   I/.well-known/oauth-authorization-server (RFC 8414), I/.well-known/openid-configuration,
//   I/auth (authorization), I/token, I/reg (dynamic registration, open), I/jwks,
//   I/token/revocation, I/token/introspection, I/me (userinfo), I/interaction/:uid (automatic).
//
// Behaviour: PKCE S256 is required of every client; refresh tokens are issued for the
// authorization code grant to every client whose grant_types include refresh_token (no
// offline_access scope nor prompt=consent needed) and rotate on each use for public clients
// (re-using a rotated one is invalid_grant and revokes the whole grant); with `resource` the
// access token is a JWT (typ at+jwt, RS256, aud = the resource, scope = the granted resource
// scopes, client_id, sub = user-1, or the client_id for client_credentials). The authorization
// response carries `iss` (RFC 9207). Loopback redirect URIs (http://127.0.0.1|localhost|[::1])
// match a registered one whatever their port. JWT access tokens cannot be introspected or
// revoked (oidc-provider answers unsupported_token_type); refresh tokens can be (revoking one
// revokes its grant). A reused authorization code is invalid_grant and revokes the tokens it
// gave. A client that registers a `scope` may only name supported scopes (openid,
// offline_access, --scopes), else invalid_client_metadata. DPoP is off.
//
// Stdout: one JSON line per event, never a token or secret:
//   {"event":"listening","issuer":I,"port":P}
//   {"event":"register","client_id","token_endpoint_auth_method","grant_types","redirect_uris"}
//   {"event":"authorize","client_id","scope","resource","redirect_uri","outcome":"granted"|"denied"}
//   {"event":"token","grant":"authorization_code"|"refresh_token"|"client_credentials",
//    "client_id","sub","aud","scope","expires_in","jti","format":"jwt"|"opaque",
//    "refresh_token":true|false}
//   {"event":"revocation"|"introspection","client_id","status"}
//   {"event":"error","route","error","error_description","error_detail"}
// Diagnostics from oidc-provider go to stderr.
import { createRequire } from "node:module";
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const peers = process.env.MCP_PEERS_NODE ?? fileURLToPath(new URL("../../.peers/node/", import.meta.url));
const require = createRequire(path.join(peers, "package.json"));
const load = (spec) => import(pathToFileURL(require.resolve(spec)).href);
const { default: Provider, errors } = await load("oidc-provider");
const jose = await load("jose");

// oidc-provider prints its notices with console.info; keep stdout for JSON lines.
console.info = (...a) => console.error(...a);

function parseArgs(argv) {
  const o = { port: 0, resources: [], scopes: "mcp:read mcp:write mcp:admin", accessTtl: 3600, refreshTtl: 86400, statics: [], defaultScope: null, deny: false, defaultResource: false, log: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--port": o.port = Number(v()); break;
      case "--resource": o.resources.push(v()); break;
      case "--scopes": o.scopes = v(); break;
      case "--default-scope": o.defaultScope = v(); break;
      case "--access-ttl": o.accessTtl = Number(v()); break;
      case "--refresh-ttl": o.refreshTtl = Number(v()); break;
      case "--static-client": o.statics.push(JSON.parse(v())); break;
      case "--deny": o.deny = true; break;
      case "--default-resource": o.defaultResource = true; break;
      case "--log": o.log = v(); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!o.resources.length) throw new Error("--resource URL is required (or --resource '*')");
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const rsScopes = opts.scopes.split(/\s+/).filter(Boolean);
const defaultScope = opts.defaultScope ?? rsScopes.join(" ");

function emit(obj) {
  const line = JSON.stringify(obj);
  process.stdout.write(line + "\n");
  if (opts.log) fs.appendFileSync(opts.log, line + "\n");
}

function resourceKnown(indicator) {
  return opts.resources.includes("*") || opts.resources.includes(indicator);
}

// Bind first, so that --port 0 works and the issuer names the real port.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(opts.port, "127.0.0.1", resolve);
});
const port = server.address().port;
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = await jose.generateKeyPair("RS256", { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), kid: crypto.randomUUID(), use: "sig", alg: "RS256" };

const configuration = {
  clients: opts.statics,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
  scopes: ["openid", "offline_access", ...rsScopes],
  responseTypes: ["code"],
  pkce: { required: () => true },
  clientBasedCORS: () => true,
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    dPoP: { enabled: false },
    registration: { enabled: true, initialAccessToken: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? (opts.defaultResource ? opts.resources.find((r) => r !== "*") : undefined),
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (!resourceKnown(indicator)) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        return {
          scope: rsScopes.join(" "),
          audience: indicator,
          accessTokenTTL: opts.accessTtl,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "RS256" } },
        };
      },
    },
  },
  // Refresh tokens without the offline_access + prompt=consent dance: whenever the client may
  // use the refresh_token grant.
  issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed("refresh_token") && code.kind !== "ClientCredentials",
  expiresWithSession: async () => false,
  ttl: {
    AccessToken: () => opts.accessTtl,
    ClientCredentials: () => opts.accessTtl,
    AuthorizationCode: () => 120,
    IdToken: () => 3600,
    RefreshToken: () => opts.refreshTtl,
    Interaction: () => 600,
    Session: () => 86400,
    Grant: () => 86400,
  },
};

const provider = new Provider(issuer, configuration);

// RFC 8252 §7.3: loopback redirect URIs match whatever their port, for web clients too.
const LOOPBACKS = new Set(["127.0.0.1", "localhost", "[::1]"]);
function withoutLoopbackPort(uri) {
  const u = URL.parse(uri);
  if (!u || u.protocol !== "http:" || !LOOPBACKS.has(u.hostname)) return undefined;
  u.port = "";
  return u.href;
}
const originalRedirectUriAllowed = provider.Client.prototype.redirectUriAllowed;
provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
  if (originalRedirectUriAllowed.call(this, value)) return true;
  const bare = withoutLoopbackPort(value);
  return bare !== undefined && this.redirectUris.some((r) => withoutLoopbackPort(r) === bare);
};

provider.on("registration_create.success", (_ctx, client) => {
  emit({
    event: "register",
    client_id: client.clientId,
    token_endpoint_auth_method: client.tokenEndpointAuthMethod,
    grant_types: client.grantTypes,
    redirect_uris: client.redirectUris,
  });
});

provider.on("grant.success", (ctx) => {
  const body = ctx.body ?? {};
  let claims = {};
  let format = "opaque";
  try {
    claims = jose.decodeJwt(body.access_token);
    format = "jwt";
  } catch {}
  emit({
    event: "token",
    grant: ctx.oidc.params.grant_type,
    client_id: ctx.oidc.client?.clientId,
    sub: claims.sub,
    aud: claims.aud,
    scope: body.scope,
    expires_in: body.expires_in,
    jti: claims.jti,
    format,
    refresh_token: !!body.refresh_token,
  });
});

for (const route of ["grant", "authorization", "registration_create", "revocation", "introspection", "userinfo", "jwks", "discovery"]) {
  provider.on(`${route}.error`, (_ctx, err) => {
    emit({ event: "error", route, error: err.error ?? err.name, error_description: err.error_description ?? err.message, error_detail: err.error_detail });
  });
}
provider.on("server_error", (_ctx, err) => console.error("server_error", err));

provider.use(async (ctx, next) => {
  await next();
  const route = ctx.oidc?.route;
  if (route === "revocation" || route === "introspection") {
    emit({ event: route, client_id: ctx.oidc.client?.clientId, status: ctx.status });
  }
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  let result;
  if (opts.deny) {
    result = { error: "access_denied", error_description: "the user denied the request" };
  } else if (prompt.name === "login") {
    result = { login: { accountId: "user-1" } };
  } else if (prompt.name === "consent") {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(" "));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(" "));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    throw new Error(`unexpected prompt ${prompt.name}`);
  }
  if (opts.deny || prompt.name === "consent") {
    emit({
      event: "authorize",
      client_id: params.client_id,
      scope: params.scope,
      resource: params.resource,
      redirect_uri: params.redirect_uri,
      outcome: opts.deny ? "denied" : "granted",
    });
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
server.on("request", (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === "/.well-known/oauth-authorization-server") {
    req.url = `/.well-known/openid-configuration${url.search}`;
  }
  if (url.pathname === "/auth" && req.method === "GET" && !url.searchParams.has("scope") && defaultScope) {
    url.searchParams.set("scope", defaultScope);
    req.url = `${url.pathname}${url.search}`;
  }
  if (url.pathname.startsWith("/interaction/") && req.method === "GET") {
    interaction(req, res).catch((err) => {
      console.error("interaction failed:", err);
      if (!res.headersSent) {
        res.writeHead(400, { "content-type": "text/plain" });
      }
      res.end(`interaction failed: ${err.message}\n`);
    });
    return;
  }
  callback(req, res);
});

emit({ event: "listening", issuer, port });

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
