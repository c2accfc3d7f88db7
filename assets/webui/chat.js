// The chat page's logic: no framework, no build step. It talks to this same server's OpenAI routes
// (/v1/chat/completions, or /v1/completions in raw mode) and streams with fetch + server-sent events.
const $ = (id) => document.getElementById(id);
const els = {
  model: $('model-name'),
  status: $('status'),
  system: $('system'),
  temperature: $('temperature'),
  topP: $('top-p'),
  maxTokens: $('max-tokens'),
  seed: $('seed'),
  apiKey: $('api-key'),
  clear: $('clear'),
  messages: $('messages'),
  form: $('composer'),
  message: $('message'),
  send: $('send'),
  stop: $('stop'),
};
const STORE = 'grok-ts.chat.';
/** Settings kept in this browser between visits (the API key too: it is entered once). */
const KEPT = { system: els.system, temperature: els.temperature, topP: els.topP, maxTokens: els.maxTokens, seed: els.seed, apiKey: els.apiKey };

const state = { model: undefined, contextLength: undefined, history: [], controller: undefined };

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function setStatus(text, error = false) {
  els.status.textContent = text;
  els.status.classList.toggle('error', error);
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = els.apiKey.value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorText(res) {
  try {
    const body = await res.json();
    return body?.error?.message ?? `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

async function loadModel() {
  try {
    const res = await fetch('/v1/models', { headers: headers() });
    if (!res.ok) {
      els.model.textContent = 'unknown';
      setStatus(res.status === 401 ? 'This server needs an API key: enter it in Settings.' : await errorText(res), true);
      return;
    }
    const body = await res.json();
    state.model = body.data?.[0]?.id;
    els.model.textContent = state.model ?? 'unknown';
    setStatus('');
    const props = await fetch('/props', { headers: headers() });
    if (props.ok) state.contextLength = (await props.json()).n_ctx;
  } catch (err) {
    setStatus(`Cannot reach the server: ${err.message}`, true);
  }
}

function numberOf(input) {
  const v = input.value.trim();
  if (v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function sampling() {
  const o = {};
  const t = numberOf(els.temperature);
  const p = numberOf(els.topP);
  const m = numberOf(els.maxTokens);
  const s = numberOf(els.seed);
  if (t !== undefined) o.temperature = t;
  if (p !== undefined) o.top_p = p;
  if (m !== undefined) o.max_tokens = Math.max(1, Math.round(m));
  if (s !== undefined) o.seed = Math.max(0, Math.round(s));
  return o;
}

/** One message in the list; returns the parts a reply fills in while it streams. */
function addMessage(role, text, extraClass = '') {
  const li = document.createElement('li');
  li.className = `msg ${role} ${extraClass}`.trim();
  const who = document.createElement('div');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : role === 'assistant' ? 'Model' : role;
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  li.append(who, body);
  els.messages.append(li);
  li.scrollIntoView({ block: 'end' });
  return { li, body };
}

function addMeta(li, parts, text) {
  const meta = document.createElement('div');
  meta.className = 'meta';
  for (const p of parts) {
    const span = document.createElement('span');
    span.textContent = p;
    meta.append(span);
  }
  const copy = document.createElement('button');
  copy.type = 'button';
  copy.className = 'copy';
  copy.textContent = 'Copy';
  copy.setAttribute('aria-label', 'Copy this reply');
  copy.addEventListener('click', () => copyText(text, copy));
  meta.append(copy);
  li.append(meta);
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (an insecure origin): copy through a selected, hidden textarea.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.append(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  button.textContent = 'Copied';
  setTimeout(() => (button.textContent = 'Copy'), 1500);
}

/** Yields the JSON (or "[DONE]") of each `data:` event of a server-sent event stream. */
async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = event
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      if (data !== '') yield data;
    }
  }
}

/** Tokens left in the context after this prompt (at least 1), from /tokenize and /props. */
async function roomAfter(prompt) {
  const fallback = 256;
  if (!state.contextLength) return fallback;
  try {
    const res = await fetch('/tokenize', { method: 'POST', headers: headers(), body: JSON.stringify({ content: prompt }) });
    if (!res.ok) return fallback;
    const { tokens } = await res.json();
    return Math.max(1, state.contextLength - Math.max(1, tokens.length));
  } catch {
    return fallback;
  }
}

function setBusy(busy) {
  els.send.disabled = busy;
  els.stop.disabled = !busy;
  els.messages.setAttribute('aria-busy', String(busy));
}

async function send(text) {
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  const raw = mode() === 'raw';
  const url = raw ? '/v1/completions' : '/v1/chat/completions';
  const body = { model: state.model, stream: true, stream_options: { include_usage: true }, ...sampling() };
  if (raw) {
    body.prompt = text;
    // /v1/completions stops after 16 tokens by default: without a limit set, run to the end of the context.
    if (body.max_tokens === undefined) body.max_tokens = await roomAfter(text);
  } else {
    const system = els.system.value.trim();
    body.messages = [...(system ? [{ role: 'system', content: system }] : []), ...state.history, { role: 'user', content: text }];
  }
  addMessage('user', text, raw ? 'raw' : '');
  const reply = addMessage('assistant', '', 'streaming');
  setStatus('Generating…');
  const started = performance.now();
  let firstAt;
  let out = '';
  let finish = null;
  let usage;
  let failure;
  try {
    const res = await fetch(url, { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!res.ok) throw new Error(await errorText(res));
    for await (const data of sseData(res.body)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message ?? 'the server reported an error');
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices ?? []) {
        const delta = raw ? c.text : c.delta?.content;
        if (delta) {
          firstAt ??= performance.now();
          out += delta;
          reply.body.textContent = out;
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
  } catch (err) {
    if (err.name === 'AbortError') finish = 'stopped';
    else failure = err;
  } finally {
    state.controller = undefined;
    setBusy(false);
  }
  reply.li.classList.remove('streaming');
  if (failure) {
    reply.li.classList.add('error');
    reply.body.textContent = out ? `${out}\n\n[error: ${failure.message}]` : `Error: ${failure.message}`;
    setStatus(failure.message, true);
    return;
  }
  const end = performance.now();
  const parts = [];
  if (usage) {
    const decodeS = (end - (firstAt ?? started)) / 1000;
    parts.push(`${usage.completion_tokens} tokens`);
    if (usage.completion_tokens > 1 && decodeS > 0) parts.push(`${((usage.completion_tokens - 1) / decodeS).toFixed(1)} tok/s`);
  }
  parts.push(`${((end - started) / 1000).toFixed(1)} s`);
  parts.push(`finish: ${finish ?? 'unknown'}`);
  reply.li.dataset.finish = finish ?? 'unknown';
  addMeta(reply.li, parts, out);
  setStatus(finish === 'stopped' ? 'Stopped.' : '');
  if (!raw) state.history.push({ role: 'user', content: text }, { role: 'assistant', content: out });
}

function stop() {
  state.controller?.abort();
}

els.form.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = els.message.value;
  if (text.trim() === '' || state.controller) return;
  els.message.value = '';
  void send(text);
});
els.message.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    els.form.requestSubmit();
  }
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && state.controller) stop();
});
els.stop.addEventListener('click', stop);
els.clear.addEventListener('click', () => {
  stop();
  state.history = [];
  els.messages.replaceChildren();
  els.message.focus();
});

for (const [name, input] of Object.entries(KEPT)) {
  const saved = localStorage.getItem(STORE + name);
  if (saved !== null) input.value = saved;
  input.addEventListener('change', () => {
    localStorage.setItem(STORE + name, input.value);
    if (name === 'apiKey') void loadModel();
  });
}
const savedMode = localStorage.getItem(STORE + 'mode');
if (savedMode) document.querySelector(`input[name="mode"][value="${savedMode === 'raw' ? 'raw' : 'chat'}"]`).checked = true;
for (const r of document.querySelectorAll('input[name="mode"]')) r.addEventListener('change', () => localStorage.setItem(STORE + 'mode', mode()));
if (window.matchMedia('(max-width: 760px)').matches) document.getElementById('settings').open = false;

void loadModel();
els.message.focus();
