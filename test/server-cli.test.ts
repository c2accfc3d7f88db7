/** `grok-ts serve` as a real process: it announces its URL, serves, and on SIGTERM finishes running requests and exits 0. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { parseDuration } from '../src/cli/commands/serve.js';
import { runCli } from './cli-harness.js';
import { FIXTURES, PROJECT_ROOT, shared } from './shared.js';

const BIN = path.join(PROJECT_ROOT, 'bin', 'grok-ts.js');

/** `grok-ts serve ARGS` as a child process, once it has printed the address it listens on. */
async function spawnServe(args: string[]): Promise<{ child: ChildProcessByStdio<null, Readable, Readable>; url: string; io: { stdout: string; stderr: string }; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, GROK_TS_API_KEY: '' },
  });
  const io = { stdout: '', stderr: '' };
  child.stderr.on('data', (d: Buffer) => (io.stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      io.stdout += d.toString();
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(io.stdout);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`serve exited early (${code}): ${io.stderr}`)));
  });
  return { child, url, io, exited };
}

test('SIGTERM: stop taking requests, let the running stream finish, exit 0', { ...FIXTURES, timeout: 30_000 }, async () => {
  const { child, url, io, exited } = await spawnServe(['--model', shared('fixtures', 'tiny'), '--backend', 'js', '--port', '0', '--model-id', 'tiny']);
  try {
    const at = new URL(url);
    const agent = new http.Agent({ keepAlive: false });
    let text = '';
    const body = JSON.stringify({ model: 'tiny', prompt: [5, 6, 7], max_tokens: 40, ignore_eos: true, stream: true });
    const finished = new Promise<void>((resolve, reject) => {
      const req = http.request({ host: at.hostname, port: at.port, method: 'POST', path: '/v1/completions', agent }, (res) => {
        res.once('data', () => child.kill('SIGTERM')); // mid-stream
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve());
      });
      req.on('error', reject);
      req.end(body);
    });
    await finished;
    assert.equal(await exited, 0, io.stderr);
    assert.match(text, /"finish_reason":"length"/);
    assert.ok(text.endsWith('data: [DONE]\n\n'), 'the running stream completed');
    assert.equal(io.stdout, `listening on ${url}\n`, 'one line on stdout');
    assert.match(io.stderr, /shutting down/);
    agent.destroy();
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('serve --help, and bad flags or files are refused before the model loads', async () => {
  const run = (args: string[]) => runCli(args);
  const help = await run(['serve', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /--api-key KEY/);
  assert.match(help.out, /GROK_TS_API_KEY/);
  assert.equal((await run(['serve', '--port', 'eighty'])).code, 2);
  assert.equal((await run(['serve', '--port', '70000'])).code, 2);
  assert.equal((await run(['serve', '--shutdown-grace', 'soon'])).code, 2);
  assert.equal((await run(['serve', '--chat-template', '/nonexistent/template.json'])).code, 66);
  for (const flag of ['--max-connections', '--max-connections-per-address', '--header-timeout', '--stall-timeout', '--max-paused', '--max-batch-per-request', '--max-chars-per-token']) {
    assert.match(help.out, new RegExp(flag.replace(/-/g, '\\-')), `--help documents ${flag}`);
    assert.equal((await run(['serve', flag, '0'])).code, 2, `${flag} 0 is refused`);
  }
});

test('a port in use or a bad --host fails at once, before the model loads, with one line and its exit code', async () => {
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as net.AddressInfo).port;
  try {
    // A model path that does not exist: loading it would fail with 66, so a bind error proves the bind came first.
    const missing = '/nonexistent/grok-ts-model';
    const inUse = await runCli(['serve', '--model', missing, '--port', String(port)]);
    assert.equal(inUse.code, 1, inUse.err);
    assert.equal(inUse.err, `grok-ts serve: cannot listen on 127.0.0.1:${port}: the address is already in use (is another server running on that port?)\n`);
    // 192.0.2.1 (TEST-NET-1) is never an address of this machine: binding it fails without sending anything.
    const badHost = await runCli(['serve', '--model', missing, '--host', '192.0.2.1', '--port', '0']);
    assert.equal(badHost.code, 2, badHost.err);
    assert.match(badHost.err, /^grok-ts serve: --host: cannot listen on 192\.0\.2\.1:0: 192\.0\.2\.1 is not an address of this machine\n$/);
    // Bound, then the load fails: its own error and exit code, and the port is free again.
    const freePort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as net.AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    const loadFails = await runCli(['serve', '--model', missing, '--port', String(freePort)]);
    assert.equal(loadFails.code, 66, loadFails.err);
    assert.doesNotMatch(loadFails.err, /internal error/);
    await new Promise<void>((resolve, reject) => {
      const again = net.createServer().once('error', reject).listen(freePort, '127.0.0.1', () => again.close(() => resolve()));
    });
  } finally {
    taken.close();
  }
});

test('durations: seconds by default, ms, s and m suffixes', () => {
  assert.equal(parseDuration('10', 'x'), 10_000);
  assert.equal(parseDuration('10s', 'x'), 10_000);
  assert.equal(parseDuration('250ms', 'x'), 250);
  assert.equal(parseDuration('1.5m', 'x'), 90_000);
  assert.throws(() => parseDuration('-1s', 'x'), /--x must be a duration/);
});

test('serve --alias, --cors, --no-webui, --log-format json: flags reach the server; one JSON log line per request on stderr', { timeout: 60_000 }, async () => {
  const { child, url, io, exited } = await spawnServe(['--backend', 'js', '--port', '0', '--alias', 'grok-1', '--alias', 'local', '--cors', 'http://page.example', '--no-webui', '--log-format', 'json']);
  try {
    const models = (await (await fetch(`${url}/v1/models`, { headers: { Origin: 'http://page.example' } })).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ['fortune-demo', 'grok-1', 'local']);
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'http://page.example' }, body: JSON.stringify({ model: 'local', prompt: 'Hi', max_tokens: 2, seed: 1 }) });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), 'http://page.example');
    assert.equal((await fetch(`${url}/`)).status, 404);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, io.stderr);
    const records = io.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const completion = records.find((x) => x.path === '/v1/completions');
    assert.ok(completion, io.stderr);
    assert.equal(completion.status, 200);
    assert.equal(completion.method, 'POST');
    assert.ok(records.some((x) => x.path === '/' && x.status === 404));
    assert.ok(records.some((x) => typeof x.msg === 'string' && /shutting down/.test(x.msg as string)));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('serve refuses a bad --cors origin, --log-format or --log-level before loading', async () => {
  const cors = await runCli(['serve', '--cors', 'page.example', '--port', '0']);
  assert.equal(cors.code, 2, cors.err);
  assert.match(cors.err, /--cors: "page\.example" is not an origin/);
  const format = await runCli(['serve', '--log-format', 'xml', '--port', '0']);
  assert.equal(format.code, 2);
  assert.match(format.err, /--log-format must be one of text, json/);
  const level = await runCli(['serve', '--log-level', 'loud', '--port', '0']);
  assert.equal(level.code, 2);
  assert.match(level.err, /--log-level must be one of debug, info, warn, error/);
});
