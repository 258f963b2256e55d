// End-to-end test of the admin console (/admin) in a real browser: Debian's Chromium driven by
// playwright-core (pinned in scripts/install-peers, never a downloaded browser), next to an MCP
// client of the official TypeScript SDK that stays connected to the proxy's merged /mcp view and
// must see what the console changes (tool list_changed notifications).
//
//   ADMIN_URL=http://127.0.0.1:P/admin/ MCP_URL=http://127.0.0.1:P/mcp ADMIN_USERNAME=u \
//   ADMIN_PASSWORD=p DEMO_COMMAND=/path/mcp-proxy INSTALL_COMMANDS='["…"]' TERMINAL=1 \
//   OUT_DIR=/tmp/shots node tests/clients/admin_browser.mjs
//
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   MCP_PEERS_NODE  the node_modules folder of the peers (default .peers/node/)
//   INSTALL_COMMANDS  a JSON array of shell commands that print numbered lines slowly
//   TERMINAL        "1": the web terminal is on and is tried; otherwise its nav entry must be absent
//   CONFIG_FILE     the servers file the proxy uses: it is edited by hand while the page is open
//                   (step hand-edit; skipped when unset)
//
// Stdout: one JSON line per step, {"step", "ok": true, "ms", ...}; on failure
// {"step", "ok": false, "error"}, a screenshot OUT_DIR/failure.png and exit 1. Screenshots of each
// view go to OUT_DIR. Diagnostics (the page's console errors) go to stderr.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const peers = process.env.MCP_PEERS_NODE ?? fileURLToPath(new URL("../../.peers/node/", import.meta.url));
const require = createRequire(path.join(peers, "package.json"));
const load = (spec) => import(pathToFileURL(require.resolve(spec)).href);
const { chromium } = require("playwright-core");
const { Client } = await load("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = await load("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { ToolListChangedNotificationSchema } = await load("@modelcontextprotocol/sdk/types.js");

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const log = (...a) => console.error("admin_browser:", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function need(name) {
  const v = process.env[name];
  if (v === undefined || v === "") throw new Error(`${name} is not set`);
  return v;
}

function readConfig() {
  const c = {
    adminUrl: need("ADMIN_URL"),
    mcpUrl: need("MCP_URL"),
    username: need("ADMIN_USERNAME"),
    password: need("ADMIN_PASSWORD"),
    demo: need("DEMO_COMMAND"),
    installCommands: JSON.parse(need("INSTALL_COMMANDS")),
    terminal: process.env.TERMINAL === "1",
    outDir: need("OUT_DIR"),
    configFile: process.env.CONFIG_FILE || null,
    chromium: process.env.CHROMIUM ?? "/usr/bin/chromium",
  };
  if (!Array.isArray(c.installCommands) || !c.installCommands.length) throw new Error("INSTALL_COMMANDS must be a non-empty JSON array");
  fs.mkdirSync(c.outDir, { recursive: true });
  return c;
}

let cfg = null;
let browser = null;
let page = null;
let client = null;
let current = "setup";
const pageProblems = []; // uncaught exceptions and CSP refusals in the page
const mcp = { listChanged: 0, echo: null };

/** Polls `fn` until it returns something truthy; fails with `what` after `timeout` ms. */
async function until(what, fn, timeout = 10_000, interval = 100) {
  const end = Date.now() + timeout;
  let last = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
    await sleep(interval);
  }
}

const text = async (selector) => ((await page.locator(selector).first().textContent()) ?? "").trim();
const shot = (name) => page.screenshot({ path: path.join(cfg.outDir, name), fullPage: false });
const visible = (selector, timeout) => page.locator(selector).first().waitFor({ state: "visible", timeout });
const hidden = (selector, timeout) => page.locator(selector).first().waitFor({ state: "hidden", timeout });

async function textIs(selector, expected, timeout = 10_000) {
  await until(`${selector} to read "${expected}"`, async () => (await text(selector)) === expected, timeout);
}

async function nav(view) {
  await page.click(`a[data-nav=${view}]`);
  await visible(`section[data-view=${view}]`);
}

/** The "N tools, M enabled" count of the tools view. */
async function toolCount() {
  const m = (await text("[data-test=tool-count]")).match(/(\d+) tools?, (\d+) enabled/);
  if (!m) throw new Error(`no tool count in "${await text("[data-test=tool-count]")}"`);
  return { total: +m[1], enabled: +m[2] };
}

async function mcpToolNames() {
  const names = [];
  let cursor;
  do {
    const r = await client.listTools(cursor ? { cursor } : {});
    names.push(...r.tools.map((t) => t.name));
    cursor = r.nextCursor;
  } while (cursor);
  return names;
}

/** Waits for a list_changed notification after `before` and for the echo tool to be (or not be)
 *  in a fresh tools/list. */
async function clientSeesEcho(present, before, timeout = 15_000) {
  await until(`notifications/tools/list_changed (had ${before})`, () => mcp.listChanged > before, timeout);
  await until(`the client's tools/list ${present ? "to contain" : "to lack"} ${mcp.echo}`,
    async () => (await mcpToolNames()).includes(mcp.echo) === present, timeout, 250);
}

async function fillServerForm({ name, command = "", args = [], installCommands = [] }) {
  const f = "dialog[data-test=server-form]";
  await visible(f);
  await page.fill(`${f} input[name=name]`, name);
  await page.selectOption(`${f} select[name=kind]`, "stdio");
  await page.fill(`${f} input[name=command]`, command);
  await page.fill(`${f} textarea[name=args]`, args.join("\n"));
  await page.fill(`${f} textarea[name=installCommands]`, installCommands.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Steps

async function stepLoad() {
  await page.goto(cfg.adminUrl, { waitUntil: "commit" });
  // Navigation start → the sign-in form visible, measured in the page itself.
  const handle = await page.waitForFunction(() => {
    const f = document.querySelector("form[data-test=login]");
    return f && f.checkVisibility() ? Math.round(performance.now()) : false;
  }, null, { polling: "raf", timeout: 20_000 });
  const ms = await handle.jsonValue();
  await shot("signin.png");

  await page.fill("form[data-test=login] input[name=username]", cfg.username);
  await page.fill("form[data-test=login] input[name=password]", `${cfg.password}-wrong`);
  await page.click("form[data-test=login] button[type=submit]");
  await until("[data-test=login-error] to show the refusal", async () => (await text("[data-test=login-error]")).length > 0);
  const refusal = await text("[data-test=login-error]");

  await page.fill("form[data-test=login] input[name=password]", cfg.password);
  await page.click("form[data-test=login] button[type=submit]");
  await visible("[data-test=logout]");
  await hidden("form[data-test=login]");
  const user = await text("[data-test=user]");
  if (user !== cfg.username) throw new Error(`the header names "${user}", not ${cfg.username}`);
  return { ms, refusal };
}

async function stepServers() {
  await visible("section[data-view=servers]");
  await until("the server count", async () => (await text("[data-test=server-count]")).length > 0);
  await shot("servers.png");
  if (await page.locator('[data-server="demo"]').count()) throw new Error("a server named demo is already configured");

  // Client-side check: stdio without a command never reaches the server.
  const posts = [];
  const onRequest = (r) => { if (r.method() === "POST" && new URL(r.url()).pathname === "/admin/api/servers") posts.push(r); };
  page.on("request", onRequest);
  await page.click("[data-test=add-server]");
  await fillServerForm({ name: "demo", command: "" });
  await page.click("[data-test=save]");
  await until("[data-error-for=command]", async () => (await text("[data-error-for=command]")).length > 0);
  await sleep(300);
  if (posts.length) throw new Error("the form was sent with an empty command");
  const commandError = await text("[data-error-for=command]");

  // The real thing.
  await page.fill("dialog[data-test=server-form] input[name=command]", cfg.demo);
  await page.fill("dialog[data-test=server-form] textarea[name=args]", "--demo-server");
  const saved = page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/admin/api/servers");
  await page.click("[data-test=save]");
  const res = await saved;
  if (res.status() !== 201) throw new Error(`POST /admin/api/servers answered ${res.status()}: ${await res.text()}`);
  await hidden("dialog[data-test=server-form]");
  const t0 = Date.now();
  await textIs('[data-server="demo"] [data-field=state]', "ready", 20_000);
  const readyMs = Date.now() - t0;

  // A duplicate name: the server's 400 with field "name", shown beside the name.
  await page.click("[data-test=add-server]");
  await fillServerForm({ name: "demo", command: cfg.demo, args: ["--demo-server"] });
  const dup = page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/admin/api/servers");
  await page.click("[data-test=save]");
  const dupRes = await dup;
  const dupBody = await dupRes.json().catch(() => ({}));
  if (dupRes.status() !== 400 || dupBody.field !== "name") throw new Error(`a duplicate name gave ${dupRes.status()} ${JSON.stringify(dupBody)}, not 400 with field name`);
  await until("[data-error-for=name]", async () => (await text("[data-error-for=name]")).length > 0);
  const nameError = await text("[data-error-for=name]");
  await shot("server-form.png");
  await page.click("[data-test=cancel]");
  await hidden("dialog[data-test=server-form]");
  page.off("request", onRequest);
  return { commandError, nameError, readyMs };
}

async function stepClient() {
  client = new Client({ name: "admin-browser-test", version: "1.0.0" });
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => { mcp.listChanged += 1; });
  await client.connect(new StreamableHTTPClientTransport(new URL(cfg.mcpUrl)));
  const names = await until("an echo tool in the merged tools/list", async () => {
    const n = await mcpToolNames();
    return n.some((x) => x.includes("echo")) && n;
  }, 15_000, 250);
  const echoes = names.filter((x) => x === "echo" || x.endsWith("echo"));
  mcp.echo = echoes.find((x) => x.includes("demo")) ?? echoes[0] ?? names.find((x) => x.includes("echo"));
  return { echo: mcp.echo, tools: names.length };
}

async function stepTools() {
  await nav("tools");
  const echoRow = '[data-tool="demo--echo"]';
  await visible(echoRow, 15_000);
  await shot("tools.png");

  await page.fill("[data-test=tool-search]", "echo");
  await until("the search to leave only echo tools", async () => {
    const shown = await page.locator("[data-tool]:visible").evaluateAll((rows) => rows.map((r) => r.textContent.toLowerCase()));
    return shown.length > 0 && shown.every((t) => t.includes("echo"));
  });
  if (!(await page.locator(echoRow).isVisible())) throw new Error("the search hid demo--echo");
  if (await page.locator('[data-tool="demo--add"]').isVisible()) throw new Error("the search for echo still shows demo--add");

  // One switch.
  const start = await toolCount();
  let before = mcp.listChanged;
  await page.locator(`${echoRow} input[data-action=enabled]`).setChecked(false);
  await clientSeesEcho(false, before);
  await until("the count to show one tool fewer enabled", async () => (await toolCount()).enabled === start.enabled - 1);
  before = mcp.listChanged;
  await page.locator(`${echoRow} input[data-action=enabled]`).setChecked(true);
  await clientSeesEcho(true, before);
  await until("the count back", async () => (await toolCount()).enabled === start.enabled);

  // Bulk, on two selected tools.
  await page.fill("[data-test=tool-search]", "");
  const rows = ['[data-tool="demo--echo"]', '[data-tool="demo--add"]'];
  for (const r of rows) await page.locator(`${r} input[data-select]`).check();
  before = mcp.listChanged;
  await page.click("[data-test=bulk-disable]");
  await until("the count after bulk-disable", async () => (await toolCount()).enabled === start.enabled - 2);
  for (const r of rows) {
    if (await page.locator(`${r} input[data-action=enabled]`).isChecked()) throw new Error(`${r} still shows enabled`);
  }
  await clientSeesEcho(false, before);
  before = mcp.listChanged;
  await page.click("[data-test=bulk-enable]");
  await until("the count after bulk-enable", async () => (await toolCount()).enabled === start.enabled);
  await clientSeesEcho(true, before);
  for (const r of rows) await page.locator(`${r} input[data-select]`).uncheck();
  return { count: await text("[data-test=tool-count]"), listChanged: mcp.listChanged };
}

async function stepPlayground() {
  await nav("playground");
  await page.selectOption("[data-test=pg-server]", "demo");
  await page.selectOption("[data-test=pg-kind]", "tool");
  await page.selectOption("[data-test=pg-item]", "echo");
  await visible("[data-test=pg-form] [name=arg-message]");
  const message = "hello from the playground";
  await page.fill("[data-test=pg-form] [name=arg-message]", message);
  await page.click("[data-test=pg-call]");
  await until("the call's result", async () => (await text("[data-test=pg-result]")).includes(message) || (await text("[data-test=pg-error]")), 15_000);
  const error = await text("[data-test=pg-error]");
  if (error) throw new Error(`the playground shows an error: ${error}`);
  await shot("playground.png");
  return {};
}

async function stepInstall() {
  await nav("servers");
  await page.click("[data-test=add-server]");
  await fillServerForm({ name: "installer", command: cfg.demo, args: ["--demo-server"], installCommands: cfg.installCommands });
  await page.click("[data-test=save]");
  await hidden("dialog[data-test=server-form]");
  const card = '[data-server="installer"]';
  await visible(`${card} button[data-action=install]`, 15_000);
  await page.click(`${card} button[data-action=install]`);
  const panel = `${card} [data-test=install-panel]`;
  await visible(panel);
  const state = `${panel} [data-test=install-state]`;
  // The backend may have started an install by itself when the server was added.
  await until("no install running", async () => (await text(state)) !== "running", 60_000);

  // Record when each output line first shows (status lines aside).
  await page.locator(`${panel} [data-test=install-output]`).evaluate((pre) => {
    window.__installLines = [];
    const seen = new Set();
    const record = () => {
      for (const el of pre.querySelectorAll(".ln:not(.status)")) {
        if (!seen.has(el)) { seen.add(el); window.__installLines.push({ text: el.textContent.trim(), at: performance.now() }); }
      }
    };
    window.__installObserver?.disconnect();
    window.__installObserver = new MutationObserver(record);
    window.__installObserver.observe(pre, { childList: true, subtree: true });
  });
  for (let attempt = 1; ; attempt++) {
    await page.click(`${panel} button[data-action=install-run]`);
    const outcome = await until("the install to start", async () => {
      if ((await text(`${panel} [data-test=install-error]`))) return "error";
      const s = await text(state);
      return s === "running" || s === "succeeded" ? s : false;
    }, 10_000);
    if (outcome !== "error") break;
    if (attempt === 3) throw new Error(`install-run refused: ${await text(`${panel} [data-test=install-error]`)}`);
    await until("no install running", async () => (await text(state)) !== "running", 60_000);
  }
  await textIs(state, "succeeded", 60_000);
  const seen = await page.evaluate(() => { window.__installObserver?.disconnect(); return window.__installLines; });
  if (seen.length < 2) throw new Error(`only ${seen.length} output line(s) showed: ${JSON.stringify(seen)}`);
  const spreadMs = Math.round(seen[seen.length - 1].at - seen[0].at);
  if (spreadMs < 500) throw new Error(`the ${seen.length} output lines showed within ${spreadMs} ms: not streamed`);
  await shot("install.png");
  return { lines: seen.length, first: seen[0].text, last: seen[seen.length - 1].text, spreadMs };
}

/** The config file edited by hand while an Edit form is open: the page shows the change live,
 *  a save from the stale form is refused (409) without losing what was typed, and after the
 *  conflict banner's Reload the same form saves on top of the hand edit. */
async function stepHandEdit() {
  if (!cfg.configFile) return { skipped: true };
  const file = cfg.configFile;
  const readFile = () => JSON.parse(fs.readFileSync(file, "utf8"));
  const f = "dialog[data-test=server-form]";
  const title = "Edited in the page";
  await nav("servers");
  if (await page.locator('[data-server="byhand"]').count()) throw new Error("a server named byhand is already configured");
  const bannerBefore = await page.locator("[data-test=config-changed]").count();
  // Dismiss an older "changed on disk" banner so that only this hand edit can bring it back.
  if (bannerBefore) await page.locator("[data-test=config-changed] button.x").click();
  await page.evaluate(() => { window.__sameDocument = true; });

  await page.click('[data-server="demo"] button[data-action=edit]');
  await visible(f);
  if ((await page.inputValue(`${f} input[name=name]`)) !== "demo") throw new Error("the Edit form does not show demo");
  await page.fill(`${f} input[name=title]`, title);

  // The hand edit, as an editor saves: a temporary file in the same folder renamed over it.
  const onDisk = readFile();
  onDisk.mcpServers ??= {};
  onDisk.mcpServers.byhand = { command: cfg.demo, args: ["--demo-server"] };
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.by-hand-${process.pid}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(onDisk, null, 2) + "\n");
  const t0 = Date.now();
  fs.renameSync(tmp, file);

  await page.waitForFunction(() => {
    const b = document.querySelector("[data-test=config-changed]");
    const c = document.querySelector('[data-server="byhand"]');
    return !!(b && c && b.checkVisibility() && c.checkVisibility());
  }, null, { polling: 100, timeout: 10_000 }).catch(async () => {
    const b = await page.locator("[data-test=config-changed]").count();
    const c = await page.locator('[data-server="byhand"]').count();
    throw new Error(`within 10 s of the hand edit the page shows ${b ? "the" : "no"} config-changed banner and ${c ? "a" : "no"} byhand card`);
  });
  const shownMs = Date.now() - t0;
  if (!(await page.evaluate(() => window.__sameDocument === true))) throw new Error("the page was reloaded to show the hand edit");
  if (!(await page.locator(f).isVisible())) throw new Error("the Edit form closed when the file changed");
  if ((await page.inputValue(`${f} input[name=title]`)) !== title) throw new Error("the hand edit overwrote what was typed in the form");
  const changed = await text("[data-test=config-changed] .banner-text");
  await shot("hand-edit.png");

  // Save from the form opened before the hand edit: refused, and nothing typed is lost.
  const put = (r) => r.request().method() === "PUT" && new URL(r.url()).pathname === "/admin/api/servers/demo";
  let answer = page.waitForResponse(put);
  await page.click(`${f} [data-test=save]`);
  let res = await answer;
  if (res.status() !== 409) throw new Error(`the stale save answered ${res.status()}, not 409: ${await res.text()}`);
  await visible("[data-test=conflict]", 5_000);
  const conflict = await text("[data-test=conflict] .banner-text");
  if (!conflict) throw new Error("the conflict banner has no text");
  if (!(await page.locator(f).isVisible())) throw new Error("the form closed on the refused save");
  if ((await page.inputValue(`${f} input[name=title]`)) !== title) throw new Error("the refused save lost the typed title");
  if (JSON.stringify(readFile().mcpServers?.demo) !== JSON.stringify(onDisk.mcpServers.demo)) throw new Error("the refused save changed demo on disk");
  await shot("conflict.png");

  // Reload (keeps the form's contents), then the same save goes through on top of the hand edit.
  await page.click("[data-test=conflict] button[data-action=reload]");
  await hidden("[data-test=conflict]", 5_000);
  if ((await page.inputValue(`${f} input[name=title]`)) !== title) throw new Error("Reload lost the typed title");
  answer = page.waitForResponse(put);
  await page.click(`${f} [data-test=save]`);
  res = await answer;
  if (res.status() !== 200) throw new Error(`the save after Reload answered ${res.status()}: ${await res.text()}`);
  await hidden(f);
  const saved = await until("the file to hold the saved title", () => {
    const c = readFile();
    return c.mcpServers?.demo?.name === title && c;
  }, 5_000);
  if (!saved.mcpServers.byhand) throw new Error("the save after Reload dropped the hand-added byhand");
  await textIs('[data-server="demo"] [data-field=title]', title);
  return { shownMs, changed, conflict, bannerBefore: bannerBefore > 0 };
}

async function stepTerminal() {
  const entry = page.locator("a[data-nav=terminal]");
  if (!cfg.terminal) {
    if (await entry.isVisible()) throw new Error("the Terminal nav entry shows while the terminal is off");
    return { skipped: true };
  }
  await nav("terminal");
  await visible("[data-test=terminal-warning]");
  const warning = await text("[data-test=terminal-warning]");
  if (!/shell on the host/i.test(warning)) throw new Error(`unexpected warning: ${warning}`);
  await visible("#terminal .xterm-rows", 15_000);
  await textIs("[data-test=terminal-status]", "connected", 15_000);
  const screen = () => page.locator("#terminal .xterm-rows").textContent().then((t) => t ?? "");
  await until("the shell's first output", async () => (await screen()).trim().length > 0, 10_000).catch(() => log("no prompt shown; typing anyway"));
  for (let attempt = 1; ; attempt++) {
    await page.click("#terminal");
    await page.keyboard.type("echo term-$((6*7))");
    await page.keyboard.press("Enter");
    try {
      await until("term-42 on the terminal", async () => (await screen()).includes("term-42"), 10_000);
      break;
    } catch (e) {
      if (attempt === 2) throw e;
    }
  }
  await shot("terminal.png");
  return {};
}

async function stepConnect() {
  await nav("connect");
  await visible("button[data-action=copy]", 10_000);
  await shot("connect.png");
  const host = new URL(cfg.mcpUrl).host;
  const snippets = await page.locator("#snippets pre").allTextContents();
  if (!snippets.some((s) => s.includes(host))) throw new Error(`no snippet mentions ${host}`);
  await page.locator("button[data-action=copy]").first().click();
  await visible("[data-test=toast]", 5_000);
  return { snippets: snippets.length };
}

async function stepSignOut() {
  await page.click("[data-test=logout]");
  await visible("form[data-test=login]");
  const res = await page.request.get(new URL("/admin/api/servers", cfg.adminUrl).href);
  if (res.status() !== 401) throw new Error(`GET /admin/api/servers after sign-out answered ${res.status()}, not 401`);
  if (pageProblems.length) throw new Error(`the page reported: ${pageProblems.join(" | ")}`);
  return {};
}

// ---------------------------------------------------------------------------------------------

async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  const extra = await fn();
  emit({ step: name, ok: true, ms: Date.now() - t0, ...extra });
}

let failed = false;
try {
  cfg = readConfig();
  browser = await chromium.launch({
    executablePath: cfg.chromium,
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on("dialog", (d) => d.accept());
  page.on("pageerror", (e) => { pageProblems.push(`uncaught: ${e.message}`); log("page error:", e.message); });
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    log("console:", m.text());
    if (/Content Security Policy/i.test(m.text())) pageProblems.push(`CSP: ${m.text()}`);
  });

  await step("load", stepLoad);
  await step("servers", stepServers);
  await step("client", stepClient);
  await step("tools", stepTools);
  await step("playground", stepPlayground);
  await step("install", stepInstall);
  await step("hand-edit", stepHandEdit);
  await step("terminal", stepTerminal);
  await step("connect", stepConnect);
  await step("signout", stepSignOut);
  emit({ step: "done", ok: true });
} catch (e) {
  failed = true;
  emit({ step: current, ok: false, error: String(e?.message ?? e) });
  log(e?.stack ?? e);
  if (page && cfg) await page.screenshot({ path: path.join(cfg.outDir, "failure.png"), fullPage: true }).catch((err) => log("no failure screenshot:", err.message));
} finally {
  await client?.close().catch(() => {});
  await browser?.close().catch(() => {});
}
process.exit(failed ? 1 : 0);
