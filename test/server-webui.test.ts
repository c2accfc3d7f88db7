/**
 * The chat page in a real browser: Debian's chromium, driven by puppeteer-core (no browser
 * download), against the bundled demo model. Send a message and see text stream in, stop it
 * mid-stream and check the server freed the sequence, run one to its end, raw-completion mode, the
 * API key kept in the browser, labels and keyboard use, a phone-width layout; and a page on
 * another origin calling the API through CORS. Skipped, saying why, only when chromium is absent
 * (.ci/run installs it).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { after, before, test } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { createServer, type GrokServer } from '../src/server/index.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
const SKIP = HAVE_CHROMIUM ? {} : { skip: `no browser at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH` };
const KEY = 'sk-browser-test';

let lm: LanguageModel;
let server: GrokServer;
let base: string;
let browser: Browser;
/** Serves a page from another origin (another port) that calls the grok-ts server. */
let other: http.Server;
let otherOrigin: string;

before(async () => {
  if (!HAVE_CHROMIUM) return;
  lm = await loadModel(undefined, { backend: 'js' });
  other = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><title>other origin</title><p>another site</p>');
  });
  await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
  otherOrigin = `http://127.0.0.1:${(other.address() as { port: number }).port}`;
  server = createServer(lm, { apiKey: KEY, corsOrigins: [otherOrigin] });
  base = (await server.listen(0)).url;
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
});
after(async () => {
  if (!HAVE_CHROMIUM) return;
  await browser?.close();
  await server.close(1000);
  await new Promise((resolve) => other.close(resolve));
  await lm.close();
});

async function api(path: string): Promise<any> {
  const res = await fetch(base + path, { headers: { Authorization: `Bearer ${KEY}` } });
  return res.json();
}

async function openPage(): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base + '/', { waitUntil: 'load' });
  (page as Page & { errors: string[] }).errors = errors;
  return page;
}

async function enterKey(page: Page): Promise<void> {
  await page.click('#api-key', { count: 3 });
  await page.type('#api-key', KEY);
  // The key is taken on change (leaving the field).
  await page.keyboard.press('Tab');
  await page.waitForFunction(() => document.getElementById('model-name')!.textContent === 'fortune-demo', { timeout: 10_000 });
}

async function setField(page: Page, selector: string, value: string): Promise<void> {
  await page.$eval(
    selector,
    (el, v) => {
      (el as HTMLInputElement).value = v;
      el.dispatchEvent(new Event('change'));
    },
    value,
  );
}

async function sendMessage(page: Page, text: string): Promise<void> {
  await page.focus('#message');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

const lastReply = (page: Page) => page.$eval('#messages li.assistant:last-child', (li) => ({
  text: li.querySelector('.text')!.textContent!,
  streaming: li.classList.contains('streaming'),
  finish: (li as HTMLElement).dataset.finish,
  meta: li.querySelector('.meta')?.textContent ?? '',
  error: li.classList.contains('error'),
}));

test('the chat page: streamed reply, stop mid-stream frees the sequence, a full reply with its stats', { ...SKIP, timeout: 120_000 }, async () => {
  const page = await openPage();
  // Before the key: the page says it needs one.
  await page.waitForFunction(() => /API key/.test(document.getElementById('status')!.textContent!), { timeout: 10_000 });
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'message', 'the message box has the focus');
  await enterKey(page);
  await setField(page, '#seed', '1');

  const abortedBefore = (await api('/health')).aborted as number;
  // Inside the page, the moment the first text shows while the reply still streams: note what the
  // page shows, then press stop (from the page itself, so no round trip lets the reply finish first).
  const atStop = page.evaluate(
    () =>
      new Promise<{ text: string; streaming: boolean; stopEnabled: boolean; sendEnabled: boolean }>((resolve) => {
        const list = document.getElementById('messages')!;
        const observer = new MutationObserver(() => {
          const li = list.querySelector('li.assistant:last-child');
          const text = li?.querySelector('.text')?.textContent ?? '';
          if (!li || text === '') return;
          observer.disconnect();
          const stop = document.getElementById('stop') as HTMLButtonElement;
          const seen = { text, streaming: li.classList.contains('streaming'), stopEnabled: !stop.disabled, sendEnabled: !(document.getElementById('send') as HTMLButtonElement).disabled };
          stop.click();
          resolve(seen);
        });
        observer.observe(list, { childList: true, subtree: true, characterData: true });
      }),
  );
  await sendMessage(page, 'Tell me a long story about the sea');
  const mid = await atStop;
  // Text arrived while the reply was still streaming, with stop on and send off...
  assert.ok(mid.streaming && mid.text.length > 0, JSON.stringify(mid));
  assert.equal(mid.stopEnabled, true);
  assert.equal(mid.sendEnabled, false);
  // ... and the stop button ended it.
  await page.waitForFunction(() => (document.querySelector('#messages li.assistant:last-child') as HTMLElement).dataset.finish !== undefined, { timeout: 10_000 });
  const stopped = await lastReply(page);
  assert.equal(stopped.finish, 'stopped');
  assert.match(stopped.meta, /finish: stopped/);
  assert.ok(stopped.text.startsWith(mid.text), 'the text streamed so far stays');
  // The server saw the client go: the sequence was aborted and freed.
  let slots: unknown[] = [];
  let health: any;
  for (let i = 0; i < 100; i++) {
    slots = await api('/slots');
    health = await api('/health');
    if (slots.length === 0 && health.active === 0 && health.aborted > abortedBefore) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(slots, []);
  assert.equal(health.active, 0);
  assert.equal(health.queued, 0);
  assert.equal(health.aborted, abortedBefore + 1);
  assert.equal(await page.$eval('#stop', (b) => (b as HTMLButtonElement).disabled), true);

  // A reply that runs to its end: tokens, tokens/s and the finish reason under it, and a copy button.
  await setField(page, '#max-tokens', '6');
  await sendMessage(page, 'Hello');
  await page.waitForFunction(() => document.querySelectorAll('#messages li.assistant[data-finish]').length === 2, { timeout: 60_000 });
  const full = await lastReply(page);
  assert.equal(full.error, false, full.text);
  assert.ok(full.text.length > 0);
  assert.match(full.meta, /\d+ tokens/);
  assert.match(full.meta, /finish: (length|stop)/);
  assert.equal(await page.$$eval('#messages li.assistant .copy', (b) => b.length), 2);
  const users = await page.$$eval('#messages li.user .text', (els) => els.map((e) => e.textContent));
  assert.deepEqual(users, ['Tell me a long story about the sea', 'Hello']);
  assert.deepEqual((page as Page & { errors: string[] }).errors, []);
  await page.close();
});

test('the chat page: raw completion mode, key kept across reloads, labels, phone width', { ...SKIP, timeout: 120_000 }, async () => {
  const page = await openPage();
  await enterKey(page);
  await page.click('input[name="mode"][value="raw"]');
  await setField(page, '#max-tokens', '5');
  await setField(page, '#seed', '2');
  await sendMessage(page, 'Once upon a time');
  await page.waitForFunction(() => (document.querySelector('#messages li.assistant:last-child') as HTMLElement | null)?.dataset.finish !== undefined, { timeout: 60_000 });
  const reply = await lastReply(page);
  assert.equal(reply.error, false, reply.text);
  assert.equal(reply.finish, 'length');
  const expected = await (await fetch(base + '/v1/completions', { method: 'POST', headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'fortune-demo', prompt: 'Once upon a time', max_tokens: 5, seed: 2, temperature: 0.7, top_p: 0.95 }) })).json();
  assert.equal(reply.text, expected.choices[0].text, 'the page sends its sampling settings');

  // Entered once, kept by the browser.
  await page.reload({ waitUntil: 'load' });
  assert.equal(await page.$eval('#api-key', (i) => (i as HTMLInputElement).value), KEY);
  await page.waitForFunction(() => document.getElementById('model-name')!.textContent === 'fortune-demo', { timeout: 10_000 });
  assert.equal(await page.$eval('input[name="mode"]:checked', (i) => (i as HTMLInputElement).value), 'raw');

  // Every control has a label.
  const unlabelled = await page.$$eval('input, textarea, select', (els) => els.filter((e) => (e as HTMLInputElement).labels!.length === 0 && !e.getAttribute('aria-label')).map((e) => e.id || e.outerHTML));
  assert.deepEqual(unlabelled, []);
  // Escape stops a running reply from the keyboard (pressed in the page as soon as text shows).
  await setField(page, '#max-tokens', '100');
  await page.click('input[name="mode"][value="chat"]');
  const escaped = page.evaluate(
    () =>
      new Promise<string>((resolve) => {
        const list = document.getElementById('messages')!;
        const observer = new MutationObserver(() => {
          const li = list.querySelector('li.assistant:last-child');
          if (!li?.classList.contains('streaming') || li.querySelector('.text')!.textContent === '') return;
          observer.disconnect();
          document.activeElement!.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
          resolve(li.querySelector('.text')!.textContent!);
        });
        observer.observe(list, { childList: true, subtree: true, characterData: true });
      }),
  );
  await sendMessage(page, 'Tell me a long story about the sea');
  assert.ok((await escaped).length > 0);
  await page.waitForFunction(() => (document.querySelector('#messages li.assistant:last-child') as HTMLElement).dataset.finish !== undefined, { timeout: 30_000 });
  assert.equal((await lastReply(page)).finish, 'stopped');

  // A phone: nothing wider than the screen, the composer and its buttons on screen.
  await page.setViewport({ width: 360, height: 740, isMobile: true, hasTouch: true });
  await page.reload({ waitUntil: 'load' });
  assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 360);
  const box = await page.$eval('#send', (b) => b.getBoundingClientRect().toJSON() as DOMRect);
  assert.ok(box.right <= 360 && box.width > 40);
  assert.equal(await page.$eval('#settings', (d) => (d as HTMLDetailsElement).open), false, 'settings fold away on a phone');
  await page.close();
});

test('a page on another origin calls the API through CORS; one from an origin not listed cannot', { ...SKIP, timeout: 60_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(otherOrigin + '/', { waitUntil: 'load' });
  const call = (url: string, key: string) =>
    page.evaluate(
      async (u, k) => {
        try {
          // Authorization and a JSON body make the browser send a preflight first.
          const res = await fetch(u + '/v1/chat/completions', { method: 'POST', headers: { Authorization: `Bearer ${k}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'fortune-demo', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, seed: 1 }) });
          return { status: res.status, body: await res.json() };
        } catch (e) {
          return { failed: String(e) };
        }
      },
      url,
      key,
    );
  const ok = (await call(base, KEY)) as { status: number; body: { choices: unknown[] } };
  assert.equal(ok.status, 200, JSON.stringify(ok));
  assert.equal(ok.body.choices.length, 1);
  // The browser can read the refusal of a wrong key (the CORS header is on errors too).
  const wrong = (await call(base, 'wrong')) as { status: number };
  assert.equal(wrong.status, 401);
  // Same server, but reached under another name (localhost): that origin is not listed, the browser blocks it.
  const blockedPage = await browser.newPage();
  const port = new URL(otherOrigin).port;
  await blockedPage.goto(`http://localhost:${port}/`, { waitUntil: 'load' });
  const blocked = await blockedPage.evaluate(async (u, k) => {
    try {
      await fetch(u + '/v1/models', { headers: { Authorization: `Bearer ${k}` } });
      return 'allowed';
    } catch (e) {
      return String(e);
    }
  }, base, KEY);
  assert.match(blocked, /TypeError/);
  await page.close();
  await blockedPage.close();
});
