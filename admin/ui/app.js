// The mcp-proxy admin console: a vanilla ES module, no framework and no build step. The proxy
// serves it at /admin (index.html), /admin/assets/app.{js,css} and /admin/assets/vendor/* (xterm).
// Everything talks to the JSON API under /admin/api/ with the session cookie; every request that
// changes something carries the X-CSRF-Token of the session. Live state comes from the
// Server-Sent Events of /admin/api/events, so nothing here ever needs a page reload.

const API = '/admin/api';
const VENDOR = '/admin/assets/vendor';
const VIEWS = ['servers', 'tools', 'playground', 'terminal', 'connect'];
const NAME_RE = /^[A-Za-z0-9._-]+$/;
const HTTP_TYPES = ['http', 'streamable-http', 'streamableHttp', 'streamable_http'];
const STDIO_FIELDS = ['command', 'args', 'env', 'cwd', 'installDirectory', 'installCommands'];
const REMOTE_FIELDS = ['url', 'headers', 'apiKey', 'bearerToken', 'oauth'];
// Server error fields that have their slot under another name in the form.
const FIELD_SLOT = { type: 'kind', disabled: 'active', key: 'name', toolsAllow: 'tools', toolsDeny: 'tools' };

const S = {
  session: null,      // {user, csrf, terminal}
  servers: null,      // the last /servers payload
  version: null,      // the config version the view shows
  receivedAt: 0,      // when that payload arrived (uptimes tick from it)
  tools: null,        // the last /tools list
  view: null,
  es: null,
  esRetry: null,
};

// ---------------------------------------------------------------------------------------------
// Small helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const enc = encodeURIComponent;
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** h('button', {class: 'x', 'data-action': 'edit', onclick: fn}, 'Edit') */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function setText(el, text) {
  const t = text == null ? '' : String(text);
  if (el && el.textContent !== t) el.textContent = t;
}

const lines = (s) => s.split('\n').map((l) => l.trim()).filter(Boolean);
const str = (v) => (typeof v === 'string' || typeof v === 'number' ? String(v) : '');
const strList = (v) => (Array.isArray(v) ? v.map(str) : []);

function human(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

function num(n) {
  if (n == null || !Number.isFinite(n)) return '—';
  if (n === 0 || Number.isInteger(n)) return String(n);
  if (Math.abs(n) < 1) return n.toFixed(2);
  if (Math.abs(n) < 100) return n.toFixed(1);
  return String(Math.round(n));
}

const ms = (v) => (v == null ? '—' : `${num(v)} ms`);

function clock(at) {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? String(at ?? '') : d.toLocaleTimeString();
}

function when(at) {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? String(at ?? '') : d.toLocaleString();
}

const pretty = (v) => JSON.stringify(v, null, 2);

/** JSON.parse that also takes what people paste from READMEs: comments, trailing commas and a
 *  bare `"name": {...}` member without the outer braces. */
function looseJson(text) {
  const t = text.trim();
  try { return JSON.parse(t); } catch (first) {
    let out = '';
    for (let i = 0; i < t.length; i++) {
      const c = t[i];
      if (c === '"') {
        let j = i + 1;
        while (j < t.length && t[j] !== '"') j += t[j] === '\\' ? 2 : 1;
        out += t.slice(i, j + 1);
        i = j;
      } else if (c === '/' && t[i + 1] === '/') {
        while (i < t.length && t[i] !== '\n') i++;
        out += '\n';
      } else if (c === '/' && t[i + 1] === '*') {
        const end = t.indexOf('*/', i + 2);
        i = end < 0 ? t.length : end + 1;
      } else out += c;
    }
    out = out.replace(/,(\s*[}\]])/g, '$1').trim().replace(/,$/, '');
    for (const candidate of [out, `{${out}}`]) {
      try { return JSON.parse(candidate); } catch { /* next */ }
    }
    throw first;
  }
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || (status ? `The server answered ${status}` : 'No answer from the server'));
    this.status = status;
    this.field = body?.field ?? null;
  }
}

/**
 * One JSON request. 401 anywhere (but at sign-in) shows the sign-in view; 409 shows the
 * conflict banner unless `conflict: false` (install uses 409 for "already running").
 */
async function api(method, path, body, { auth = true, conflict = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && S.session?.csrf) headers['X-CSRF-Token'] = S.session.csrf;
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, { error: `Could not reach the proxy (${e.message})` });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text.slice(0, 500) }; }
  }
  if (res.ok) return data ?? {};
  const err = new ApiError(res.status, data);
  if (res.status === 401 && auth) signedOut('Your session ended; please sign in again.');
  if (res.status === 409 && conflict) showConflict(err.message);
  throw err;
}

// ---------------------------------------------------------------------------------------------
// Toasts and banners

function toast(message, kind = 'info', link = null) {
  const el = h('div', { class: `toast ${kind}`, 'data-test': 'toast', role: kind === 'error' ? 'alert' : 'status' },
    h('span', {}, message),
    link && h('a', { href: link.href, target: '_blank', rel: 'noopener noreferrer' }, link.text),
    h('button', { type: 'button', class: 'x', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×'));
  const host = $('#toasts');
  host.append(el);
  while (host.childElementCount > 3) host.firstElementChild.remove();
  setTimeout(() => el.remove(), kind === 'error' || link ? 10000 : 3500);
}

function banner(test, text, { kind = 'info', actions = [], host = $('#banners') } = {}) {
  $(`[data-test="${test}"]`)?.remove();
  const el = h('div', { class: `banner ${kind}`, 'data-test': test, role: 'status' },
    h('span', { class: 'banner-text' }, text),
    actions.map((a) => h('button', { type: 'button', 'data-action': a.action, onclick: () => a.run(el) }, a.label)),
    h('button', { type: 'button', class: 'x', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×'));
  host.prepend(el);
  return el;
}

/** The config file changed since the view was loaded: say so, offer to reload. In a modal
 *  dialog the page behind is inert, so the banner goes into the dialog while it is open. */
function showConflict(message) {
  const open = dialog().open;
  banner('conflict', `${message || 'The config file changed since this view was loaded.'} Reload to see the current contents${open ? '; what you typed is kept' : ''}.`, {
    kind: 'warn',
    host: open ? $('#sf-banners') : $('#banners'),
    actions: [{ label: 'Reload', action: 'reload', run: reloadAfterConflict }],
  });
}

async function reloadAfterConflict(el) {
  try {
    await refreshServers();
    if (dialog().open && formCtx) {
      formCtx.version = S.version;
      const current = formCtx.original && S.servers.servers.find((s) => s.name === formCtx.original);
      if (current) formCtx.entry = structuredClone(current.entry);
      setText($('[data-test=form-error]'), '');
    }
    el.remove();
    toast('Reloaded the current configuration.');
  } catch (e) {
    if (e.status !== 401) toast(e.message, 'error');
  }
}

// ---------------------------------------------------------------------------------------------
// Session

function showLogin(message = '') {
  $('#boot').hidden = true;
  $('#app').hidden = true;
  $('#login-view').hidden = false;
  setText($('[data-test=login-error]'), message);
  const f = $('form[data-test=login]');
  (f.username.value ? f.password : f.username).focus();
}

function signedOut(message = '') {
  const wasIn = S.session != null;
  S.session = null;
  closeEvents();
  termClose();
  if (dialog().open) dialog().close();
  showLogin(wasIn ? message : '');
}

function startApp(session) {
  S.session = session;
  $('#boot').hidden = true;
  $('#login-view').hidden = true;
  $('#app').hidden = false;
  setText($('[data-test=user]'), session.user);
  $('[data-nav=terminal]').hidden = !session.terminal;
  connectEvents();
  refreshServers().catch((e) => e.status !== 401 && toast(e.message, 'error'));
  route();
}

async function onLogin(ev) {
  ev.preventDefault();
  const f = ev.currentTarget;
  const button = $('button[type=submit]', f);
  setText($('[data-test=login-error]'), '');
  button.disabled = true;
  try {
    const token = f.token ? f.token.value.trim() : '';
    if (!token && (!f.username.value || !f.password.value)) {
      setText($('[data-test=login-error]'), 'Give a user name and a password (or a key or token).');
      return;
    }
    const body = token ? { token } : { username: f.username.value, password: f.password.value };
    const s = await api('POST', '/login', body, { auth: false });
    f.password.value = '';
    if (f.token) f.token.value = '';
    startApp(s);
  } catch (e) {
    setText($('[data-test=login-error]'), e.status === 401 ? e.message || 'Wrong user name or password.' : e.message);
    f.password.select();
  } finally {
    button.disabled = false;
  }
}

async function onLogout() {
  try { await api('POST', '/logout', undefined, { auth: false }); } catch (e) {
    if (e.status !== 401) { toast(e.message, 'error'); return; }
  }
  signedOut();
}

// ---------------------------------------------------------------------------------------------
// Live events

function closeEvents() {
  clearTimeout(S.esRetry);
  S.es?.close();
  S.es = null;
  $('[data-test=live]').hidden = true;
}

function connectEvents() {
  closeEvents();
  const es = new EventSource(`${API}/events`);
  S.es = es;
  const on = (type, fn) => es.addEventListener(type, (ev) => {
    let data;
    try { data = JSON.parse(ev.data || '{}'); } catch { console.warn('bad event data', type, ev.data); return; }
    fn(data);
  });
  es.addEventListener('open', () => { $('[data-test=live]').hidden = true; });
  es.addEventListener('error', () => {
    if (S.es !== es) return;
    $('[data-test=live]').hidden = false;
    // The browser retries by itself unless the answer was not an event stream (e.g. 401).
    if (es.readyState === EventSource.CLOSED) {
      S.es = null;
      S.esRetry = setTimeout(checkAndReconnect, 3000);
    }
  });
  on('servers', applyServers);
  on('config', (d) => {
    if (d.byHand) {
      // In a modal dialog the page behind is inert: the banner goes into the dialog then.
      const open = dialog().open;
      banner('config-changed', `The config file was changed on disk; the view shows the new contents${open ? ' (saving this form now would overwrite that change, so it will be refused)' : ''}.`, {
        kind: 'info',
        host: open ? $('#sf-banners') : $('#banners'),
      });
    }
  });
  on('install', onInstallEvent);
  on('tools', async () => {
    S.toolsStale = true;
    if (S.view === 'tools') loadTools();
    else if (S.view === 'playground') {
      await loadTools();
      if (pgEl('kind').value === 'tool' && !PG.items.length) pgItems();
    }
  });
}

async function checkAndReconnect() {
  if (!S.session) return;
  try {
    await api('GET', '/session');
    connectEvents();
  } catch (e) {
    if (e.status !== 401) S.esRetry = setTimeout(checkAndReconnect, 5000);
  }
}

// ---------------------------------------------------------------------------------------------
// Routing

function route() {
  if (!S.session) return;
  let view = location.hash.replace(/^#\/?/, '').split(/[/?]/)[0] || 'servers';
  if (!VIEWS.includes(view) || (view === 'terminal' && !S.session.terminal)) {
    view = 'servers';
    if (location.hash) history.replaceState(null, '', '#/servers');
  }
  S.view = view;
  for (const sec of $$('section[data-view]')) sec.hidden = sec.dataset.view !== view;
  for (const a of $$('a[data-nav]')) {
    if (a.dataset.nav === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (view === 'tools') loadTools();
  else if (view === 'playground') pgEnter();
  else if (view === 'terminal') termEnter();
  else if (view === 'connect') loadConnect();
}

// ---------------------------------------------------------------------------------------------
// Servers

const cards = new Map(); // name → card

async function refreshServers() {
  applyServers(await api('GET', '/servers'));
}

function applyServers(payload) {
  if (!payload || !Array.isArray(payload.servers)) return;
  S.servers = payload;
  S.version = payload.version;
  S.receivedAt = Date.now();
  const list = $('#server-list');
  const active = payload.servers.filter((s) => s.active).length;
  const n = payload.servers.length;
  setText($('[data-test=server-count]'), `${n} server${n === 1 ? '' : 's'}, ${active} active`);
  setText($('[data-test=config-file]'), payload.file ?? '');
  const seen = new Set();
  payload.servers.forEach((s, i) => {
    let card = cards.get(s.name);
    if (!card) {
      card = buildCard(s.name);
      cards.set(s.name, card);
    }
    updateCard(card, s);
    if (list.children[i] !== card.el) list.insertBefore(card.el, list.children[i] ?? null);
    seen.add(s.name);
  });
  for (const [name, card] of cards) {
    if (!seen.has(name)) {
      card.el.remove();
      cards.delete(name);
    }
  }
  $('#server-empty').hidden = n > 0;
  pgServerOptions();
}

const STATS = [
  ['transport', 'Transport'], ['protocol', 'Protocol'], ['pid', 'PID'], ['uptime', 'Uptime'],
  ['restarts', 'Restarts'], ['tools', 'Tools'], ['sessions', 'Sessions'], ['calls', 'Calls/s'],
  ['errors', 'Errors'], ['p50', 'p50'], ['p99', 'p99'],
];

function buildCard(name) {
  const f = {};
  const field = (key, tag = 'span', cls = '') => (f[key] = h(tag, { 'data-field': key, class: cls || null }));
  const el = h('article', { class: 'card server', 'data-server': name },
    h('div', { class: 'srv-head' },
      h('div', { class: 'srv-name' }, h('h3', {}, name), field('title', 'span', 'muted')),
      field('install-state', 'span', 'tag'),
      field('state', 'span', 'badge')),
    field('target', 'p', 'target'),
    h('dl', { class: 'stats' }, STATS.map(([key, label]) => h('div', {}, h('dt', {}, label), field(key, 'dd')))),
    h('div', { class: 'last-error-row' }, field('last-error', 'p', 'last-error'), field('last-error-at', 'span', 'muted small')),
    field('actions', 'div', 'srv-actions'),
    field('panels', 'div', 'panels'));
  return { name, el, f, sig: null, s: null, logs: null, install: null };
}

function targetText(entry) {
  if (typeof entry.command === 'string') {
    const quote = (a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a);
    return [entry.command, ...strList(entry.args)].map(quote).join(' ');
  }
  return str(entry.url);
}

function updateCard(card, s) {
  card.s = s;
  const st = s.status ?? {};
  const { f } = card;
  const state = st.state ?? (s.active ? 'stopped' : 'inactive');
  setText(f.state, state);
  f.state.className = `badge state-${state}`;
  card.el.classList.toggle('inactive', !s.active);
  setText(f.title, typeof s.entry?.name === 'string' ? s.entry.name : '');
  setText(f.target, targetText(s.entry ?? {}));
  setText(f.transport, st.transport ?? '—');
  setText(f.protocol, st.protocol ?? '—');
  setText(f.pid, st.pid ?? '—');
  setText(f.uptime, human(st.uptimeSeconds));
  setText(f.restarts, st.restarts ?? 0);
  setText(f.tools, st.tools ?? '—');
  setText(f.sessions, st.sessions ?? 0);
  setText(f.calls, num(st.callsPerSecond ?? 0));
  setText(f.errors, st.errors ?? 0);
  setText(f.p50, ms(st.p50Ms));
  setText(f.p99, ms(st.p99Ms));
  setText(f['last-error'], st.lastError ?? '');
  setText(f['last-error-at'], st.lastError && st.lastErrorAt ? when(st.lastErrorAt) : '');
  const inst = s.install ?? { state: 'none' };
  setText(f['install-state'], inst.state && inst.state !== 'none' ? `install ${installLabel(inst)}` : '');
  f['install-state'].className = `tag install-${inst.state}`;
  if (card.install) setInstallState(card, installLabel(inst));

  const hasInstall = Array.isArray(s.entry?.installCommands) && s.entry.installCommands.length > 0;
  const needsAuth = state === 'needs-authorization';
  const sig = `${s.active}|${needsAuth}|${hasInstall}|${st.transport === 'stdio' || typeof s.entry?.command === 'string'}`;
  if (sig !== card.sig) {
    card.sig = sig;
    const b = (action, label, cls) => h('button', { type: 'button', 'data-action': action, class: cls }, label);
    f.actions.replaceChildren(...[
      needsAuth && b('oauth', 'Sign in…', 'primary'),
      b('edit', 'Edit'),
      b('toggle', s.active ? 'Disable' : 'Enable'),
      b('restart', 'Restart'),
      b('logs', 'Logs'),
      hasInstall && b('install', 'Install'),
      b('delete', 'Delete', 'danger'),
    ].filter(Boolean));
  }
  if (!hasInstall && card.install) closeInstall(card);
}

function tickUptimes() {
  if (S.view !== 'servers' || !S.servers || document.hidden) return;
  const extra = (Date.now() - S.receivedAt) / 1000;
  for (const card of cards.values()) {
    const up = card.s?.status?.uptimeSeconds;
    if (up != null && card.s.status.state === 'ready') setText(card.f.uptime, human(up + extra));
  }
}

async function onServerAction(ev) {
  const button = ev.target.closest('button[data-action]');
  const cardEl = button?.closest('[data-server]');
  if (!button || !cardEl) return;
  const card = cards.get(cardEl.dataset.server);
  if (!card) return;
  const { name } = card;
  const action = button.dataset.action;
  const path = `/servers/${enc(name)}`;
  const busy = (p) => {
    button.disabled = true;
    return p.finally(() => { button.disabled = false; });
  };
  try {
    switch (action) {
      case 'edit': openForm(name); break;
      case 'delete': {
        if (!confirm(`Delete the server "${name}" from the config file? Its process is stopped and its tools disappear.`)) return;
        const r = await busy(api('DELETE', path, { version: S.version }));
        if (r.version) S.version = r.version;
        toast(`Deleted ${name}.`);
        await refreshServers();
        break;
      }
      case 'toggle': {
        const active = !card.s.active;
        const r = await busy(api('POST', `${path}/active`, { active, version: S.version }));
        if (r.version) S.version = r.version;
        toast(`${active ? 'Enabled' : 'Disabled'} ${name}.`);
        await refreshServers();
        break;
      }
      case 'restart':
        await busy(api('POST', `${path}/restart`));
        toast(`Restarting ${name}…`);
        break;
      case 'oauth': {
        const r = await busy(api('POST', `${path}/oauth`));
        if (r.url) {
          if (!/^https?:\/\//i.test(r.url)) throw new Error(`refusing to open ${r.url}`);
          window.open(r.url, '_blank', 'noopener');
          toast(`A sign-in page for ${name} opened in a new tab.`, 'info', { href: r.url, text: 'Open it again' });
        } else if (r.signedIn) toast(`${name} is signed in.`);
        break;
      }
      case 'logs': toggleLogs(card); break;
      case 'logs-refresh': loadLogs(card); break;
      case 'logs-close': closeLogs(card); break;
      case 'install': card.install ? closeInstall(card) : openInstall(card); break;
      case 'install-run': runInstall(card, button); break;
      case 'install-cancel': cancelInstall(card, button); break;
      case 'install-close': closeInstall(card); break;
      default: break;
    }
  } catch (e) {
    if (e.status !== 401 && e.status !== 409) toast(`${name}: ${e.message}`, 'error');
  }
}

// --- logs

function toggleLogs(card) {
  if (card.logs) closeLogs(card);
  else {
    const pre = h('pre', { 'data-test': 'logs', class: 'out' }, 'Loading…');
    card.logs = h('div', { class: 'panel', 'data-panel': 'logs' },
      h('div', { class: 'panel-head' }, h('strong', {}, 'Recent stderr'), h('span', { class: 'spacer' }),
        h('button', { type: 'button', 'data-action': 'logs-refresh' }, 'Refresh'),
        h('button', { type: 'button', 'data-action': 'logs-close' }, 'Close')),
      pre);
    card.f.panels.append(card.logs);
    loadLogs(card);
  }
}

function closeLogs(card) {
  card.logs?.remove();
  card.logs = null;
}

async function loadLogs(card) {
  const pre = card.logs && $('pre', card.logs);
  if (!pre) return;
  try {
    const r = await api('GET', `/servers/${enc(card.name)}/logs`);
    const ls = r.lines ?? [];
    pre.replaceChildren(...ls.map((l) => h('span', { class: 'ln' }, h('span', { class: 'at' }, clock(l.at)), ' ', l.text, '\n')));
    if (!ls.length) pre.textContent = 'Nothing was written to stderr yet.';
    pre.scrollTop = pre.scrollHeight;
  } catch (e) {
    pre.textContent = e.message;
  }
}

// --- install

function installLabel(inst) {
  if (!inst?.state) return 'none';
  return inst.state === 'failed' && inst.exitCode != null ? `failed (exit ${inst.exitCode})` : inst.state;
}

function openInstall(card) {
  const out = h('pre', { 'data-test': 'install-output', class: 'out' });
  const el = h('div', { class: 'panel', 'data-test': 'install-panel' },
    h('div', { class: 'panel-head' },
      h('strong', {}, 'Install'), h('span', { 'data-test': 'install-state', class: 'badge' }),
      h('span', { class: 'muted small', 'data-field': 'install-dir' }), h('span', { class: 'spacer' }),
      h('button', { type: 'button', 'data-action': 'install-run', class: 'primary' }, 'Run install'),
      h('button', { type: 'button', 'data-action': 'install-cancel' }, 'Cancel install'),
      h('button', { type: 'button', 'data-action': 'install-close' }, 'Close')),
    h('p', { class: 'muted small' }, strList(card.s?.entry?.installCommands).join(' && ')),
    h('p', { class: 'error', 'data-test': 'install-error' }),
    out);
  card.install = { el, out, pending: true, buffer: [] };
  card.f.panels.append(el);
  setInstallState(card, installLabel(card.s?.install));
  loadInstall(card);
}

function closeInstall(card) {
  card.install?.el.remove();
  card.install = null;
}

async function loadInstall(card) {
  const p = card.install;
  p.pending = true;
  p.buffer = [];
  try {
    const r = await api('GET', `/servers/${enc(card.name)}/install`, undefined, { conflict: false });
    if (card.install !== p) return;
    const got = (r.lines ?? []).filter((l) => l.stream !== 'status');
    p.out.replaceChildren();
    for (const l of got) appendInstallLine(p, l.stream, l.text);
    // Events that arrived while the request was under way may already be in its answer:
    // skip the longest run of them that repeats the answer's tail.
    const buf = p.buffer.filter((e) => e.stream !== 'status');
    const same = (a, b) => a.stream === b.stream && a.text === b.text;
    let skip = 0;
    for (let k = Math.min(buf.length, got.length); k > 0; k--) {
      if (buf.slice(0, k).every((e, i) => same(e, got[got.length - k + i]))) { skip = k; break; }
    }
    for (const e of buf.slice(skip)) appendInstallLine(p, e.stream, e.text);
    setInstallState(card, installLabel(r));
    setText($('[data-field=install-dir]', p.el), r.directory ? `in ${r.directory}` : '');
  } catch (e) {
    if (card.install === p) setText($('[data-test=install-error]', p.el), e.message);
  } finally {
    p.pending = false;
    p.buffer = [];
  }
}

function appendInstallLine(p, stream, text) {
  const out = p.out;
  const atEnd = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
  out.append(h('span', { class: `ln ${stream}` }, text, '\n'));
  while (out.childElementCount > 5000) out.firstElementChild.remove();
  if (atEnd) out.scrollTop = out.scrollHeight;
}

function setInstallState(card, text) {
  const el = card.install && $('[data-test=install-state]', card.install.el);
  if (!el) return;
  const state = String(text || 'none');
  setText(el, state);
  el.className = `badge install-${state.split(' ')[0]}`;
  $('[data-action=install-cancel]', card.install.el).disabled = state !== 'running';
  setText($('[data-action=install-run]', card.install.el), state === 'none' ? 'Run install' : 'Run again');
}

function onInstallEvent(ev) {
  const card = cards.get(ev.server);
  if (card && ev.stream === 'status') {
    const tag = card.f['install-state'];
    setText(tag, `install ${ev.text}`);
    tag.className = `tag install-${String(ev.text).split(' ')[0]}`;
  }
  const p = card?.install;
  if (!p) return;
  if (ev.stream === 'status') {
    setInstallState(card, ev.text);
    if (!p.pending) appendInstallLine(p, 'status', `— ${ev.text}`);
  } else if (p.pending) p.buffer.push(ev);
  else appendInstallLine(p, ev.stream, ev.text);
}

async function runInstall(card, button) {
  const p = card.install;
  setText($('[data-test=install-error]', p.el), '');
  p.out.replaceChildren();
  button.disabled = true;
  try {
    await api('POST', `/servers/${enc(card.name)}/install`, { force: true }, { conflict: false });
    setInstallState(card, 'running');
  } catch (e) {
    if (e.status !== 401) setText($('[data-test=install-error]', p.el), e.message);
  } finally {
    button.disabled = false;
  }
}

async function cancelInstall(card, button) {
  button.disabled = true;
  try {
    await api('DELETE', `/servers/${enc(card.name)}/install`, undefined, { conflict: false });
  } catch (e) {
    if (e.status !== 401) setText($('[data-test=install-error]', card.install.el), e.message);
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// The server form

let formCtx = null; // {original: name|null, entry, version}
const dialog = () => $('dialog[data-test=server-form]');
const form = () => $('#server-form');

function clearErrors() {
  for (const el of $$('[data-error-for]', form())) el.textContent = '';
  for (const el of $$('[aria-invalid]', form())) el.removeAttribute('aria-invalid');
  setText($('[data-test=form-error]'), '');
  setText($('[data-test=paste-error]'), '');
}

function showFieldError(field, message) {
  const name = FIELD_SLOT[field] ?? field;
  const slot = name ? $(`[data-error-for="${CSS.escape(name)}"]`, form()) : null;
  if (slot && !slot.closest('[hidden]')) {
    slot.textContent = message;
    const input = form().elements[name];
    if (input instanceof Element) input.setAttribute('aria-invalid', 'true');
    return input;
  }
  setText($('[data-test=form-error]'), field ? `${field}: ${message}` : message);
  return null;
}

function kindOf(e) {
  if (e.type === 'sse') return 'sse';
  if (HTTP_TYPES.includes(e.type)) return 'http';
  if (e.type === 'stdio' || typeof e.command === 'string') return 'stdio';
  return typeof e.url === 'string' ? 'auto' : 'stdio';
}

function onKindChange() {
  const stdio = form().elements.kind.value === 'stdio';
  $('[data-kind-group=stdio]', form()).hidden = !stdio;
  $('[data-kind-group=remote]', form()).hidden = stdio;
}

function fillForm(name, e) {
  const f = form().elements;
  f.name.value = name;
  f.title.value = str(e.name);
  f.kind.value = kindOf(e);
  f.command.value = str(e.command);
  f.args.value = strList(e.args).join('\n');
  f.env.value = Object.entries(isObj(e.env) ? e.env : {}).map(([k, v]) => `${k}=${str(v)}`).join('\n');
  f.cwd.value = str(e.cwd);
  f.installDirectory.value = str(e.installDirectory);
  f.installCommands.value = strList(e.installCommands).join('\n');
  f.url.value = str(e.url);
  f.headers.value = Object.entries(isObj(e.headers) ? e.headers : {}).map(([k, v]) => `${k}: ${str(v)}`).join('\n');
  f.apiKey.value = str(e.apiKey);
  f.bearerToken.value = str(e.bearerToken);
  f.oauth.value = e.oauth === undefined ? '' : pretty(e.oauth);
  f.timeout.value = typeof e.timeout === 'number' ? String(e.timeout) : str(e.timeout);
  f.toolsAllow.value = strList(e.tools?.allow).join('\n');
  f.toolsDeny.value = strList(e.tools?.deny).join('\n');
  f.active.checked = typeof e.active === 'boolean' ? e.active : e.disabled !== true;
  f.required.checked = e.required !== false;
  onKindChange();
}

function openForm(name = null) {
  const s = name != null ? S.servers?.servers.find((x) => x.name === name) : null;
  formCtx = { original: name, entry: structuredClone(s?.entry ?? {}), version: S.version };
  clearErrors();
  $('#sf-banners').replaceChildren();
  $('[data-test=paste-json]').value = '';
  setText($('#sf-title'), name != null ? `Edit ${name}` : 'Add server');
  fillForm(name ?? '', formCtx.entry);
  dialog().showModal();
  const f = form().elements;
  (name != null ? f.title : f.name).focus();
}

/** The entry the form describes: the original entry with the known fields overwritten, and
 *  each known field that was emptied removed. */
function readForm() {
  const f = form().elements;
  const errs = {};
  const orig = formCtx.entry;
  const e = structuredClone(orig);
  const put = (key, value) => {
    const empty = value == null || value === '' || (Array.isArray(value) && !value.length) || (isObj(value) && !Object.keys(value).length);
    if (empty) delete e[key];
    else e[key] = value;
  };
  const pairs = (field, text, sep, what) => {
    const out = {};
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (!line) return;
      const at = line.indexOf(sep);
      const key = at < 0 ? '' : line.slice(0, at).trim();
      if (!key) errs[field] ??= `Line ${i + 1}: expected ${what}`;
      else out[key] = line.slice(at + 1).trim();
    });
    return out;
  };

  const name = f.name.value.trim();
  if (!name) errs.name = 'A name is required.';
  else if (!NAME_RE.test(name) || name === '.' || name === '..') errs.name = 'Use letters, digits, ".", "_" and "-" only (not "." or "..").';
  put('name', f.title.value.trim());

  const kind = f.kind.value;
  if (kind === 'stdio') {
    for (const k of REMOTE_FIELDS) delete e[k];
    e.type = 'stdio';
    const command = f.command.value.trim();
    if (!command) errs.command = 'A stdio server needs a command.';
    put('command', command);
    put('args', lines(f.args.value));
    put('env', pairs('env', f.env.value, '=', 'KEY=VALUE'));
    put('cwd', f.cwd.value.trim());
    put('installDirectory', f.installDirectory.value.trim());
    put('installCommands', lines(f.installCommands.value));
  } else {
    for (const k of STDIO_FIELDS) delete e[k];
    if (kind === 'auto') delete e.type;
    else if (kind === 'sse') e.type = 'sse';
    else e.type = HTTP_TYPES.includes(orig.type) ? orig.type : 'http';
    const url = f.url.value.trim();
    let ok = false;
    try { ok = ['http:', 'https:'].includes(new URL(url).protocol); } catch { /* not a URL */ }
    if (!url) errs.url = 'A remote server needs a URL.';
    else if (!ok && !url.includes('${')) errs.url = 'Give an http:// or https:// URL.';
    put('url', url);
    put('headers', pairs('headers', f.headers.value, ':', 'Name: value'));
    put('apiKey', f.apiKey.value.trim());
    put('bearerToken', f.bearerToken.value.trim());
    const oauth = f.oauth.value.trim();
    if (oauth) {
      try {
        const v = looseJson(oauth);
        if (!isObj(v)) throw new Error('expected a JSON object');
        e.oauth = v;
      } catch (err) { errs.oauth = `Not a JSON object: ${err.message}`; }
    } else delete e.oauth;
  }

  const timeout = f.timeout.value.trim();
  if (!timeout) delete e.timeout;
  else if (!(Number(timeout) > 0)) errs.timeout = 'A positive number of seconds.';
  else e.timeout = Number(timeout);

  const tools = isObj(orig.tools) ? { ...orig.tools } : {};
  for (const [key, input] of [['allow', f.toolsAllow], ['deny', f.toolsDeny]]) {
    const list = lines(input.value);
    if (list.length) tools[key] = list;
    else delete tools[key];
  }
  put('tools', tools);

  // `active` (or the older `disabled`) and `required` default to true: written when false, or
  // when the file already said it.
  delete e.disabled;
  if (!f.active.checked) e.active = false;
  else if ('active' in orig) e.active = true;
  else delete e.active;
  if (!f.required.checked) e.required = false;
  else if ('required' in orig) e.required = true;
  else delete e.required;
  return { name, entry: e, errs };
}

async function onSave(ev) {
  ev.preventDefault();
  clearErrors();
  const { name, entry, errs } = readForm();
  const bad = Object.entries(errs);
  if (bad.length) {
    let first = null;
    for (const [field, msg] of bad) first ??= showFieldError(field, msg);
    first?.focus?.();
    return;
  }
  const save = $('[data-test=save]');
  save.disabled = true;
  try {
    let r;
    if (formCtx.original == null) {
      r = await api('POST', '/servers', { name, entry, version: formCtx.version });
    } else {
      const body = { entry, version: formCtx.version };
      if (name !== formCtx.original) body.name = name;
      r = await api('PUT', `/servers/${enc(formCtx.original)}`, body);
    }
    if (r.version) S.version = r.version;
    const added = formCtx.original == null;
    dialog().close();
    formCtx = null;
    toast(added ? `Added ${name}.` : `Saved ${name}.`);
    refreshServers().catch(() => {});
  } catch (e) {
    if (e.status === 409) setText($('[data-test=form-error]'), 'Not saved: the config file changed. Reload, check, then save again.');
    else if (e.status !== 401) showFieldError(e.field, e.message)?.focus?.();
  } finally {
    save.disabled = false;
  }
}

function onPasteApply() {
  const errEl = $('[data-test=paste-error]');
  setText(errEl, '');
  const text = $('[data-test=paste-json]').value;
  if (!text.trim()) { setText(errEl, 'Paste a JSON entry first.'); return; }
  let v;
  try { v = looseJson(text); } catch (e) { setText(errEl, `Not valid JSON: ${e.message}`); return; }
  if (!isObj(v)) { setText(errEl, 'Expected a JSON object.'); return; }
  const looksLikeEntry = (o) => ['command', 'url', 'args', 'type', 'env', 'headers'].some((k) => k in o);
  let name = null;
  let entry = v;
  let note = '';
  const pick = (map) => {
    const keys = Object.keys(map);
    if (keys.length > 1) note = `The paste has ${keys.length} servers; filled in the first, "${keys[0]}".`;
    name = keys[0] ?? null;
    entry = name == null ? null : map[name];
  };
  if (isObj(v.mcpServers)) pick(v.mcpServers);
  else if (isObj(v.servers) && !looksLikeEntry(v)) pick(v.servers);
  else if (!looksLikeEntry(v)) pick(v);
  if (!isObj(entry)) { setText(errEl, 'Found no server entry (an object with a command or a url).'); return; }
  formCtx.entry = structuredClone(entry);
  fillForm(name ?? form().elements.name.value, entry);
  clearErrors();
  setText(errEl, note);
}

// ---------------------------------------------------------------------------------------------
// Tools

const toolRows = new Map(); // key → row

async function loadTools() {
  try {
    const r = await api('GET', '/tools');
    S.tools = r.tools ?? [];
    S.toolsStale = false;
    renderTools();
  } catch (e) {
    if (e.status !== 401) toast(`Tools: ${e.message}`, 'error');
  }
  return S.tools ?? [];
}

function buildToolRow(key) {
  const f = {};
  const el = h('div', { class: 'tool-row', 'data-tool': key, role: 'row' },
    h('input', { type: 'checkbox', 'data-select': '', 'aria-label': `Select ${key}` }),
    h('label', { class: 'switch', title: 'Enabled' },
      (f.enabled = h('input', { type: 'checkbox', 'data-action': 'enabled', 'aria-label': `Enable ${key}` })), h('span', {})),
    (f.server = h('span', { class: 'tool-server' })),
    h('div', { class: 'tool-main' },
      h('div', {}, (f.display = h('strong', { 'data-field': 'display-name' })), ' ', (f.orig = h('code', { class: 'muted small' }))),
      (f.desc = h('div', { class: 'muted small tool-desc', 'data-field': 'description' }))),
    h('button', { type: 'button', 'data-action': 'edit-tool' }, 'Edit'));
  return { key, el, f, t: null, editor: null };
}

function updateToolRow(row, t) {
  row.t = t;
  const { f } = row;
  f.enabled.checked = !!t.enabled;
  row.el.classList.toggle('disabled', !t.enabled);
  setText(f.server, t.server);
  setText(f.display, t.displayName || t.name);
  setText(f.orig, t.displayName ? t.name : '');
  setText(f.desc, t.description ?? t.originalDescription ?? '');
}

function renderTools() {
  const body = $('#tool-rows');
  const seen = new Set();
  const tools = S.tools ?? [];
  tools.forEach((t, i) => {
    let row = toolRows.get(t.key);
    if (!row) {
      row = buildToolRow(t.key);
      toolRows.set(t.key, row);
    }
    updateToolRow(row, t);
    if (body.children[i] !== row.el) body.insertBefore(row.el, body.children[i] ?? null);
    seen.add(t.key);
  });
  for (const [key, row] of toolRows) {
    if (!seen.has(key)) {
      row.el.remove();
      toolRows.delete(key);
    }
  }
  $('#tool-empty').hidden = tools.length > 0;
  const enabled = tools.filter((t) => t.enabled).length;
  setText($('[data-test=tool-count]'), `${tools.length} tools, ${enabled} enabled`);
  filterTools();
}

function filterTools() {
  const q = $('[data-test=tool-search]').value.trim().toLowerCase();
  for (const row of toolRows.values()) {
    const t = row.t;
    const hay = [t.server, t.name, t.key, t.displayName, t.description, t.originalDescription].filter(Boolean).join('\n').toLowerCase();
    const show = !q || hay.includes(q);
    row.el.hidden = !show;
    if (!show) $('[data-select]', row.el).checked = false;
  }
  updateSelection();
}

function selectedRows() {
  return [...toolRows.values()].filter((r) => !r.el.hidden && $('[data-select]', r.el).checked);
}

function updateSelection() {
  const visible = [...toolRows.values()].filter((r) => !r.el.hidden);
  const n = selectedRows().length;
  const all = $('[data-test=select-all]');
  all.checked = n > 0 && n === visible.length;
  all.indeterminate = n > 0 && n < visible.length;
  setText($('[data-test=selected-count]'), n ? `${n} selected` : '');
  $('[data-test=bulk-enable]').disabled = !n;
  $('[data-test=bulk-disable]').disabled = !n;
}

async function patchTools(changes, message) {
  const r = await api('PATCH', '/tools', { changes });
  if (message) toast(message);
  loadTools();
  return r;
}

async function onBulk(enabled) {
  const rows = selectedRows();
  if (!rows.length) return;
  try {
    await patchTools(rows.map((r) => ({ key: r.key, enabled })), `${enabled ? 'Enabled' : 'Disabled'} ${rows.length} tool${rows.length === 1 ? '' : 's'}.`);
  } catch (e) {
    if (e.status !== 401) toast(e.message, 'error');
  }
}

function openToolEditor(row) {
  if (row.editor) { row.editor.remove(); row.editor = null; return; }
  const t = row.t;
  const desc = t.description ?? t.originalDescription ?? '';
  row.editor = h('div', { class: 'tool-editor' },
    h('label', {}, h('span', { class: 'lbl' }, 'Display name', h('small', {}, 'empty: the server\'s name')),
      h('input', { name: 'displayName', value: t.displayName ?? '', placeholder: t.name, autocomplete: 'off' })),
    h('label', {}, h('span', { class: 'lbl' }, 'Description', h('small', {}, 'empty: the server\'s description')),
      h('textarea', { name: 'description', rows: 2, value: desc, placeholder: t.originalDescription ?? '' })),
    t.originalDescription != null && t.originalDescription !== desc
      ? h('p', { class: 'muted small' }, 'The server\'s description: ', t.originalDescription) : null,
    h('div', { class: 'actions' },
      h('button', { type: 'button', 'data-action': 'reset-tool' }, 'Reset to the server\'s'),
      h('button', { type: 'button', 'data-action': 'cancel-tool' }, 'Cancel'),
      h('button', { type: 'button', 'data-action': 'save-tool', class: 'primary' }, 'Save')));
  row.el.append(row.editor);
  $('input', row.editor).focus();
}

async function onToolsClick(ev) {
  const target = ev.target;
  const rowEl = target.closest('[data-tool]');
  const row = rowEl && toolRows.get(rowEl.dataset.tool);
  if (!row) return;
  const action = target.closest('button[data-action]')?.dataset.action;
  if (action === 'edit-tool') openToolEditor(row);
  else if (action === 'cancel-tool') { row.editor?.remove(); row.editor = null; }
  else if (action === 'save-tool' || action === 'reset-tool') {
    const t = row.t;
    let change = { key: row.key, displayName: null, description: null };
    if (action === 'save-tool') {
      const dn = $('[name=displayName]', row.editor).value.trim();
      const d = $('[name=description]', row.editor).value.trim();
      change = {
        key: row.key,
        displayName: dn && dn !== t.name ? dn : null,
        description: d && d !== (t.originalDescription ?? '') ? d : null,
      };
    }
    try {
      await patchTools([change], `Saved ${row.key}.`);
      row.editor?.remove();
      row.editor = null;
    } catch (e) {
      if (e.status !== 401) toast(e.message, 'error');
    }
  }
}

async function onToolsChange(ev) {
  const target = ev.target;
  if (target.matches('[data-select]')) { updateSelection(); return; }
  if (!target.matches('input[data-action=enabled]')) return;
  const row = toolRows.get(target.closest('[data-tool]').dataset.tool);
  const enabled = target.checked;
  row.t.enabled = enabled;
  row.el.classList.toggle('disabled', !enabled);
  try {
    await patchTools([{ key: row.key, enabled }], `${enabled ? 'Enabled' : 'Disabled'} ${row.t.displayName || row.key}.`);
  } catch (e) {
    target.checked = !enabled;
    row.t.enabled = !enabled;
    row.el.classList.toggle('disabled', enabled);
    if (e.status !== 401) toast(e.message, 'error');
  }
}

function onSelectAll(ev) {
  for (const r of toolRows.values()) if (!r.el.hidden) $('[data-select]', r.el).checked = ev.target.checked;
  updateSelection();
}

// ---------------------------------------------------------------------------------------------
// Playground

const PG = { items: [], seq: 0, entered: false };
const pgEl = (t) => $(`[data-test=pg-${t}]`);

function pgServerOptions() {
  const sel = pgEl('server');
  const names = (S.servers?.servers ?? []).map((s) => s.name);
  const have = [...sel.options].map((o) => o.value);
  if (have.join('\n') === names.join('\n')) return;
  const keep = sel.value;
  sel.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
  if (names.includes(keep)) sel.value = keep;
  else if (PG.entered) pgItems();
}

async function pgEnter() {
  pgServerOptions();
  const first = !PG.entered;
  PG.entered = true;
  if (!S.tools || S.toolsStale) await loadTools();
  if (first || !PG.items.length) pgItems();
}

async function pgItems() {
  const seq = ++PG.seq;
  const server = pgEl('server').value;
  const kind = pgEl('kind').value;
  const sel = pgEl('item');
  const keep = sel.value;
  pgClearResult();
  let items = [];
  try {
    if (!server) items = [];
    else if (kind === 'tool') {
      const tools = S.tools ?? await loadTools();
      items = tools.filter((t) => t.server === server).map((t) => ({
        value: t.name, label: `${t.displayName ? `${t.displayName} (${t.name})` : t.name}${t.enabled ? '' : ' — disabled'}`,
        description: t.description ?? t.originalDescription, schema: t.inputSchema,
      }));
    } else if (kind === 'prompt') {
      const r = await api('GET', `/servers/${enc(server)}/prompts`);
      items = (r.prompts ?? []).map((p) => ({ value: p.name, label: p.title || p.name, description: p.description, args: p.arguments ?? [] }));
    } else {
      const r = await api('GET', `/servers/${enc(server)}/resources`);
      items = [
        ...(r.resources ?? []).map((x) => ({ value: x.uri, label: `${x.name || x.uri} — ${x.uri}`, description: x.description, uri: x.uri })),
        ...(r.resourceTemplates ?? []).map((x) => ({ value: x.uriTemplate, label: `${x.name || x.uriTemplate} — ${x.uriTemplate} (template)`, description: x.description, uri: x.uriTemplate })),
      ];
    }
  } catch (e) {
    if (seq === PG.seq && e.status !== 401) setText(pgEl('error'), e.message);
  }
  if (seq !== PG.seq) return;
  PG.items = items;
  sel.replaceChildren(...items.map((it) => h('option', { value: it.value }, it.label)));
  if (!items.length) sel.append(h('option', { value: '' }, server ? `No ${kind}s` : 'No servers'));
  if (items.some((it) => it.value === keep)) sel.value = keep;
  pgForm();
}

function pgClearResult() {
  setText(pgEl('error'), '');
  setText(pgEl('result'), '');
  setText(pgEl('text'), '');
  pgEl('text').hidden = true;
}

function pgField(name, p, required) {
  const type = Array.isArray(p.type) ? p.type.find((t) => t !== 'null') : p.type;
  const id = `arg-${name}`;
  let input;
  if (Array.isArray(p.enum)) {
    input = h('select', { name: id, 'data-kind': 'enum' },
      required ? null : h('option', { value: '' }, '—'),
      p.enum.map((v) => h('option', { value: JSON.stringify(v) }, typeof v === 'string' ? v : JSON.stringify(v))));
    if (p.default !== undefined) input.value = JSON.stringify(p.default);
  } else if (type === 'string') {
    const long = /\b(long|multi-?line|body|content|text|code|script|markdown|json|html|query|prompt)\b/i.test(p.description ?? '') || (p.maxLength ?? 0) > 200;
    input = long ? h('textarea', { name: id, rows: 4, 'data-kind': 'string' }) : h('input', { name: id, 'data-kind': 'string', autocomplete: 'off' });
    if (typeof p.default === 'string') input.value = p.default;
  } else if (type === 'number' || type === 'integer') {
    input = h('input', { name: id, type: 'number', step: type === 'integer' ? '1' : 'any', 'data-kind': type });
    if (typeof p.default === 'number') input.value = String(p.default);
  } else if (type === 'boolean') {
    input = h('input', { name: id, type: 'checkbox', 'data-kind': 'boolean' });
    if (typeof p.default === 'boolean') input.checked = p.default;
    else if (!required) input.indeterminate = true; // not sent until touched
    input.addEventListener('change', () => { input.dataset.touched = '1'; });
  } else {
    input = h('textarea', { name: id, rows: 3, 'data-kind': 'json', spellcheck: 'false', placeholder: type === 'array' ? '[ ]' : type === 'object' ? '{ }' : 'JSON' });
    if (p.default !== undefined) input.value = pretty(p.default);
  }
  if (required) input.setAttribute('required', '');
  const label = h('label', { class: type === 'boolean' ? 'check' : null },
    type === 'boolean' ? input : null,
    h('span', {}, h('code', {}, name), required ? h('span', { class: 'req', title: 'required' }, ' *') : null,
      type && type !== 'string' ? h('small', { class: 'muted' }, ` ${type}`) : null),
    p.description ? h('small', { class: 'muted hint' }, p.description) : null,
    type === 'boolean' ? null : input);
  return label;
}

function pgForm() {
  const f = pgEl('form');
  const it = PG.items.find((x) => x.value === pgEl('item').value);
  const kind = pgEl('kind').value;
  setText(pgEl('description'), it?.description ?? '');
  f.replaceChildren();
  if (!it) return;
  if (kind === 'tool') {
    const props = isObj(it.schema?.properties) ? it.schema.properties : {};
    const req = new Set(Array.isArray(it.schema?.required) ? it.schema.required : []);
    for (const [name, p] of Object.entries(props)) f.append(pgField(name, isObj(p) ? p : {}, req.has(name)));
    if (!Object.keys(props).length) f.append(h('p', { class: 'muted' }, 'This tool takes no arguments.'));
  } else if (kind === 'prompt') {
    for (const a of it.args) f.append(pgField(a.name, { type: 'string', description: a.description }, !!a.required));
    if (!it.args.length) f.append(h('p', { class: 'muted' }, 'This prompt takes no arguments.'));
  } else {
    f.append(h('label', {}, h('span', {}, 'URI', it.value.includes('{') ? h('small', { class: 'muted' }, ' fill in the template\'s {placeholders}') : null),
      h('input', { name: 'uri', value: it.uri, autocomplete: 'off', spellcheck: 'false' })));
  }
}

function pgArgs() {
  const args = {};
  for (const el of $$('[name^="arg-"]', pgEl('form'))) {
    const name = el.name.slice(4);
    const required = el.hasAttribute('required');
    const kind = el.dataset.kind;
    if (kind === 'boolean') {
      if (required || el.dataset.touched || !el.indeterminate) args[name] = el.checked;
      continue;
    }
    const raw = el.value;
    if (raw === '' || (kind === 'json' && !raw.trim())) {
      if (required && kind !== 'string') throw new Error(`${name} is required.`);
      if (required) args[name] = '';
      continue;
    }
    if (kind === 'string') args[name] = raw;
    else if (kind === 'number' || kind === 'integer') {
      const n = Number(raw);
      if (!Number.isFinite(n) || (kind === 'integer' && !Number.isInteger(n))) throw new Error(`${name} must be ${kind === 'integer' ? 'an integer' : 'a number'}.`);
      args[name] = n;
    } else {
      try { args[name] = JSON.parse(raw); } catch (e) { throw new Error(`${name}: not valid JSON (${e.message})`); }
    }
  }
  return args;
}

function resultText(kind, res) {
  const parts = [];
  const content = (c) => {
    if (!c) return;
    if (c.type === 'text') parts.push(c.text);
    else if (c.type === 'resource' && typeof c.resource?.text === 'string') parts.push(c.resource.text);
    else if (c.type) parts.push(`[${c.type}${c.mimeType ? ` ${c.mimeType}` : ''}]`);
  };
  if (kind === 'tool') (res?.content ?? []).forEach(content);
  else if (kind === 'prompt') (res?.messages ?? []).forEach((m) => { parts.push(`${m.role}:`); content(m.content); });
  else (res?.contents ?? []).forEach((c) => parts.push(typeof c.text === 'string' ? c.text : `[blob ${c.mimeType ?? ''}, ${c.blob?.length ?? 0} base64 characters]`));
  return parts.join('\n');
}

async function pgCall() {
  pgClearResult();
  const server = pgEl('server').value;
  const kind = pgEl('kind').value;
  const item = pgEl('item').value;
  if (!server || !item) { setText(pgEl('error'), 'Choose a server and an item first.'); return; }
  let method;
  let params;
  try {
    if (kind === 'resource') {
      method = 'resources/read';
      params = { uri: $('[name=uri]', pgEl('form')).value.trim() };
    } else {
      method = kind === 'tool' ? 'tools/call' : 'prompts/get';
      params = { name: item, arguments: pgArgs() };
    }
  } catch (e) {
    setText(pgEl('error'), e.message);
    return;
  }
  const button = pgEl('call');
  button.disabled = true;
  setText(button, 'Calling…');
  const t0 = performance.now();
  try {
    const r = await api('POST', '/call', { server, method, params });
    const took = `${Math.round(performance.now() - t0)} ms`;
    if (r.error) {
      setText(pgEl('error'), `The server answered with error ${r.error.code ?? ''}: ${r.error.message ?? ''} (${took})`);
      setText(pgEl('result'), pretty(r.error));
    } else {
      const text = resultText(kind, r.result);
      if (text) { setText(pgEl('text'), text); pgEl('text').hidden = false; }
      if (r.result?.isError) setText(pgEl('error'), `The tool reported an error (${took}).`);
      setText(pgEl('result'), pretty(r.result));
      pgEl('result').dataset.took = took;
    }
  } catch (e) {
    if (e.status !== 401) setText(pgEl('error'), e.message);
  } finally {
    button.disabled = false;
    setText(button, 'Call');
  }
}

// ---------------------------------------------------------------------------------------------
// Terminal (xterm.js, loaded on first use)

const T = { term: null, fit: null, ws: null, loading: null };

function loadScript(src) {
  return new Promise((resolve, reject) => {
    document.head.append(h('script', { src, onload: resolve, onerror: () => reject(new Error(`Could not load ${src}`)) }));
  });
}

function loadXterm() {
  if (!$(`link[href="${VENDOR}/xterm.css"]`)) document.head.append(h('link', { rel: 'stylesheet', href: `${VENDOR}/xterm.css` }));
  T.loading ??= loadScript(`${VENDOR}/xterm.js`).then(() => loadScript(`${VENDOR}/addon-fit.js`));
  return T.loading.catch((e) => { T.loading = null; throw e; });
}

const termStatus = (t) => setText($('[data-test=terminal-status]'), t);

function termFit() {
  if (!T.term || S.view !== 'terminal') return;
  try { T.fit.fit(); } catch { /* not laid out yet */ }
}

function termSend(obj) {
  if (T.ws?.readyState === WebSocket.OPEN) T.ws.send(JSON.stringify(obj));
}

async function termEnter() {
  try {
    await loadXterm();
  } catch (e) {
    termStatus(e.message);
    return;
  }
  if (!S.session?.terminal || S.view !== 'terminal') return;
  if (typeof window.Terminal !== 'function' || typeof window.FitAddon?.FitAddon !== 'function') {
    // A binary built without npm serves a stand-in that only says why.
    const why = window.MCP_PROXY_VENDOR_MISSING || 'The terminal emulator (xterm.js) could not be loaded.';
    termStatus('unavailable');
    $('#terminal').replaceChildren(h('p', { class: 'term-missing', 'data-test': 'terminal-missing' }, why));
    return;
  }
  if (!T.term) {
    T.term = new window.Terminal({
      cursorBlink: true, fontSize: 13, scrollback: 5000,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      theme: { background: '#1b1f24', foreground: '#e6e6e6', cursor: '#f0f0f0' },
    });
    T.fit = new window.FitAddon.FitAddon();
    T.term.loadAddon(T.fit);
    T.term.open($('#terminal'));
    T.term.onData((data) => termSend({ type: 'input', data }));
    T.term.onResize(({ cols, rows }) => termSend({ type: 'resize', cols, rows }));
    new ResizeObserver(() => termFit()).observe($('.term-wrap'));
  }
  termFit();
  if (!T.ws) termConnect();
  T.term.focus();
}

function termConnect() {
  if (T.ws) {
    const old = T.ws;
    T.ws = null;
    old.close();
  }
  const u = new URL(`${API}/terminal`, location.href);
  u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = `?cols=${T.term.cols}&rows=${T.term.rows}`;
  const ws = new WebSocket(u);
  ws.binaryType = 'arraybuffer';
  T.ws = ws;
  termStatus('connecting…');
  ws.addEventListener('open', () => {
    if (T.ws !== ws) return;
    termStatus('connected');
    termSend({ type: 'resize', cols: T.term.cols, rows: T.term.rows });
  });
  ws.addEventListener('message', (ev) => {
    if (T.ws !== ws) return;
    T.term.write(typeof ev.data === 'string' ? ev.data : new Uint8Array(ev.data));
  });
  ws.addEventListener('close', () => {
    if (T.ws !== ws) return;
    T.ws = null;
    T.term.write('\r\n[session ended]\r\n');
    termStatus('ended');
    if (S.session) api('GET', '/session').catch(() => {}); // a 401 here shows the sign-in view
  });
}

function termReconnect() {
  if (!T.term) { termEnter(); return; }
  T.term.reset();
  termConnect();
  T.term.focus();
}

function termClose() {
  if (T.ws) {
    const ws = T.ws;
    T.ws = null;
    ws.close();
  }
  T.term?.reset();
  termStatus('');
}

// ---------------------------------------------------------------------------------------------
// Connect

async function copyText(text, pre) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied to the clipboard.');
  } catch {
    const range = document.createRange();
    range.selectNodeContents(pre);
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { /* unsupported */ }
    toast(ok ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C (⌘C) to copy.');
  }
}

async function loadConnect() {
  const host = $('#snippets');
  try {
    const r = await api('GET', '/connect');
    const snippets = r.snippets ?? [];
    host.replaceChildren(...snippets.map((s) => {
      const pre = h('pre', { class: 'out code', 'data-language': s.language ?? null }, s.text);
      return h('article', { class: 'card snippet', 'data-client': s.client },
        h('div', { class: 'panel-head' }, h('h3', {}, s.title || s.client), h('span', { class: 'muted small' }, s.language ?? ''),
          h('span', { class: 'spacer' }),
          h('button', { type: 'button', 'data-action': 'copy', onclick: () => copyText(s.text, pre) }, 'Copy')),
        pre);
    }));
    if (!snippets.length) host.replaceChildren(h('p', { class: 'empty' }, 'No snippets.'));
  } catch (e) {
    if (e.status !== 401) host.replaceChildren(h('p', { class: 'error' }, e.message));
  }
}

// ---------------------------------------------------------------------------------------------
// Start

function wire() {
  $('form[data-test=login]').addEventListener('submit', onLogin);
  $('[data-test=logout]').addEventListener('click', onLogout);
  window.addEventListener('hashchange', route);
  window.addEventListener('resize', termFit);

  $('[data-test=add-server]').addEventListener('click', () => openForm(null));
  $('#server-list').addEventListener('click', onServerAction);
  form().addEventListener('submit', onSave);
  form().elements.kind.addEventListener('change', () => { onKindChange(); clearErrors(); });
  form().addEventListener('input', (ev) => {
    const name = FIELD_SLOT[ev.target.name] ?? ev.target.name;
    const slot = name && $(`[data-error-for="${CSS.escape(name)}"]`, form());
    if (slot) slot.textContent = '';
    ev.target.removeAttribute?.('aria-invalid');
  });
  $('[data-test=cancel]').addEventListener('click', () => dialog().close());
  $('[data-test=paste-apply]').addEventListener('click', onPasteApply);
  dialog().addEventListener('close', () => {
    for (const test of ['conflict', 'config-changed']) {
      const c = $(`#sf-banners [data-test=${test}]`);
      if (c) $('#banners').prepend(c);
    }
  });

  $('[data-test=tool-search]').addEventListener('input', filterTools);
  $('[data-test=select-all]').addEventListener('change', onSelectAll);
  $('[data-test=bulk-enable]').addEventListener('click', () => onBulk(true));
  $('[data-test=bulk-disable]').addEventListener('click', () => onBulk(false));
  $('#tool-rows').addEventListener('click', onToolsClick);
  $('#tool-rows').addEventListener('change', onToolsChange);

  pgEl('server').addEventListener('change', pgItems);
  pgEl('kind').addEventListener('change', pgItems);
  pgEl('item').addEventListener('change', () => { pgClearResult(); pgForm(); });
  pgEl('call').addEventListener('click', pgCall);
  pgEl('form').addEventListener('submit', (ev) => { ev.preventDefault(); pgCall(); });

  $('[data-test=terminal-reconnect]').addEventListener('click', termReconnect);
  setInterval(tickUptimes, 1000);
}

async function boot() {
  wire();
  try {
    startApp(await api('GET', '/session', undefined, { auth: false }));
  } catch (e) {
    showLogin(e.status === 401 ? '' : e.message);
  }
}

boot();
