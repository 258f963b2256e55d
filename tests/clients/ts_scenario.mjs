// Drive @modelcontextprotocol/server-everything through the official TypeScript SDK client.
//
//   node ts_scenario.mjs URL [sse|streamable] [clients]
//
// Each client answers sampling, elicitation and roots with answers tagged with its own name,
// so that a server request delivered to the wrong client fails. One line per check; exits 1
// if any check failed.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.MCP_PEERS_NODE ?? ".", "package.json"));
const sdk = (p) => import(require.resolve(`@modelcontextprotocol/sdk/${p}`));
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const { SSEClientTransport } = await sdk("client/sse.js");
const types = await sdk("types.js");

const [url, transport = "streamable", count = "1"] = process.argv.slice(2);
const failures = [];

function report(tag, name, ok, detail = "") {
  const line = `${ok ? "ok  " : "FAIL"} [${tag}] ${name}: ${detail}`;
  console.log(line);
  if (!ok) failures.push(line);
}

const textOf = (r) => (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join(" ");

async function one(tag) {
  const client = new Client(
    { name: `ts-${tag}`, version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } },
  );
  client.setRequestHandler(types.CreateMessageRequestSchema, async () => ({
    role: "assistant",
    content: { type: "text", text: `reply-from-${tag}` },
    model: "test-model",
    stopReason: "endTurn",
  }));
  client.setRequestHandler(types.ElicitRequestSchema, async () => ({
    action: "accept",
    content: { name: `user-${tag}`, color: "red", email: "a@b.c", age: 30, agree: true, pets: ["cats"] },
  }));
  client.setRequestHandler(types.ListRootsRequestSchema, async () => ({
    roots: [{ uri: `file:///roots/${tag}`, name: tag }],
  }));
  const link =
    transport === "sse" ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
  await client.connect(link);
  report(tag, "initialize", !!client.getServerVersion(), JSON.stringify(client.getServerVersion()));

  const tools = (await client.listTools()).tools.map((t) => t.name);
  report(tag, "tools/list", tools.includes("echo"), `${tools.length} tools`);

  let r = await client.callTool({ name: "echo", arguments: { message: `hello ${tag}` } });
  report(tag, "tools/call echo", textOf(r).includes(`hello ${tag}`), textOf(r));

  const progress = [];
  r = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
    undefined,
    { onprogress: (p) => progress.push(p.progress) },
  );
  // Over HTTP+SSE the TypeScript SDK client loses the last of server-everything's progress
  // notifications even when connected to it directly (no proxy), so two are enough there.
  const wanted = transport === "sse" ? 2 : 3;
  report(tag, "progress", progress.length >= wanted && !r.isError, `${progress.length} notifications ${JSON.stringify(progress)} ${textOf(r).slice(0,80)}`);

  r = await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 10 } });
  report(tag, "sampling", textOf(r).includes(`reply-from-${tag}`), textOf(r).slice(0, 120));

  r = await client.callTool({ name: "trigger-elicitation-request", arguments: {} });
  report(tag, "elicitation", textOf(r).includes(`user-${tag}`), textOf(r).slice(0, 120));

  r = await client.callTool({ name: "get-roots-list", arguments: {} });
  report(tag, "roots", textOf(r).includes(`file:///roots/${tag}`), textOf(r).slice(0, 120));

  const resources = (await client.listResources()).resources;
  report(tag, "resources/list", resources.length > 0, `${resources.length} resources`);
  const read = await client.readResource({ uri: resources[0].uri });
  report(tag, "resources/read", read.contents.length > 0, resources[0].uri);

  const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
  report(tag, "prompts/list", prompts.includes("simple-prompt"), prompts.join(","));

  // A call cancelled by the client: the SDK sends notifications/cancelled and gives up.
  const abort = new AbortController();
  const slow = client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 5, steps: 5 } },
    undefined,
    { signal: abort.signal },
  );
  setTimeout(() => abort.abort("changed my mind"), 300);
  const outcome = await slow.then(
    () => "finished",
    (e) => `aborted: ${e.message ?? e}`,
  );
  report(tag, "cancellation", outcome.startsWith("aborted"), outcome);
  r = await client.callTool({ name: "echo", arguments: { message: "still here" } });
  report(tag, "usable after cancellation", textOf(r).includes("still here"), textOf(r));

  await client.ping();
  report(tag, "ping", true);
  // A well-behaved client ends its session (DELETE) before it goes.
  if (link.terminateSession) await link.terminateSession();
  await client.close();
}

const tags = Array.from({ length: Number(count) }, (_, i) => `c${i + 1}`);
// Server requests during a call go to the session whose call is in flight; with one shared
// stdio server the clients take turns for those, as with any shared server.
for (const tag of tags) {
  try {
    await one(tag);
  } catch (e) {
    report(tag, "session", false, String(e?.stack ?? e));
  }
}
console.log(`${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
