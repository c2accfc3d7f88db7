/**
 * Tokenizer benchmark: encode throughput on a few MB of mixed text (code, English, eleven other
 * languages in six scripts), cold (first pass, empty caches) and warm; many short encodes;
 * decode and streaming decode; a 10× length scaling check on text without repeats; and, when
 * Python's `sentencepiece` module is installed, the C++ library on the same text in the same run
 * (and whether its ids are the same). Run standalone: `node dist/bench/tokenizer.js`.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TARGET_BYTES = 3 << 20;

/** A deterministic PRNG (mulberry32) so every run measures the same synthetic text. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Real text where the machine has it: TypeScript's translated diagnostics (cs, de, es, fr, it,
 * ja, ko, pl, pt-br, ru, tr, zh-cn, zh-tw), its DOM typings (code + English comments) and this
 * project's sources, interleaved in 4 KB slices. Falls back to synthetic multi-script text.
 */
function mixedText(): { text: string; source: string } {
  const parts: string[] = [];
  const tsLib = path.join(ROOT, 'node_modules', 'typescript', 'lib');
  if (fs.existsSync(tsLib)) {
    for (const dir of fs.readdirSync(tsLib).sort()) {
      const f = path.join(tsLib, dir, 'diagnosticMessages.generated.json');
      if (fs.existsSync(f)) parts.push(Object.values(JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, string>).join('\n'));
    }
    const dom = path.join(tsLib, 'lib.dom.d.ts');
    if (fs.existsSync(dom)) parts.push(fs.readFileSync(dom, 'utf8').slice(0, 800_000));
  }
  const srcDir = path.join(ROOT, 'src');
  if (fs.existsSync(srcDir)) {
    for (const f of fs.readdirSync(srcDir, { recursive: true }) as string[]) {
      if (f.endsWith('.ts')) parts.push(fs.readFileSync(path.join(srcDir, f), 'utf8'));
    }
  }
  if (parts.join('').length < TARGET_BYTES / 4) return { text: syntheticText(TARGET_BYTES, 7), source: 'synthetic' };
  // Interleave slices so every stretch of the text mixes scripts, as a chat log would.
  const slices = parts.map((p) => {
    const out: string[] = [];
    for (let i = 0; i < p.length; i += 4096) out.push(p.slice(i, i + 4096));
    return out;
  });
  let text = '';
  for (let round = 0; Buffer.byteLength(text) < TARGET_BYTES && slices.some((s) => round < s.length); round++) {
    for (const s of slices) if (round < s.length) text += s[round];
  }
  return { text: (text as unknown as { toWellFormed(): string }).toWellFormed(), source: 'typescript diagnostics (13 languages) + lib.dom.d.ts + src/' };
}

/** Words drawn from several scripts with random lengths: almost no repeats, so no cache help. */
function syntheticText(bytes: number, seed: number): string {
  const r = rng(seed);
  const ranges: [number, number][] = [[0x61, 0x7a], [0x61, 0x7a], [0x430, 0x44f], [0x3b1, 0x3c9], [0x4e00, 0x9fa5], [0x3041, 0x3096], [0xac00, 0xd7a3], [0x5d0, 0x5ea]];
  const out: string[] = [];
  let n = 0;
  while (n < bytes) {
    const [a, b] = ranges[Math.floor(r() * ranges.length)]!;
    let w = '';
    const len = 2 + Math.floor(r() * 9);
    for (let i = 0; i < len; i++) w += String.fromCodePoint(a + Math.floor(r() * (b - a + 1)));
    const sep = r() < 0.1 ? '\n' : r() < 0.1 ? ', ' : ' ';
    out.push(w, sep);
    n += Buffer.byteLength(w) + sep.length;
  }
  return out.join('');
}

function seconds(f: () => void): number {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function best(runs: number, f: () => void): number {
  let b = Infinity;
  for (let i = 0; i < runs; i++) b = Math.min(b, seconds(f));
  return b;
}

/** A python3 that can import sentencepiece, or undefined. */
function findPython(): string | undefined {
  const candidates = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import sentencepiece'], { stdio: 'ignore', timeout: 20_000 });
    if (r.status === 0) return py;
  }
  return undefined;
}

const PY_SCRIPT = `
import json, sys, time, sentencepiece as spm
model, text_path, ids_path = sys.argv[1:4]
t0 = time.perf_counter(); sp = spm.SentencePieceProcessor(model_file=model); load = time.perf_counter() - t0
text = open(text_path, encoding='utf-8').read()
t0 = time.perf_counter(); ids = sp.encode(text); whole = time.perf_counter() - t0
lines = text.split('\\n')
t0 = time.perf_counter()
for line in lines: sp.encode(line)
per_line = time.perf_counter() - t0
t0 = time.perf_counter(); sp.decode(ids); dec = time.perf_counter() - t0
open(ids_path, 'w').write(json.dumps(ids))
print(json.dumps({'load': load, 'whole': whole, 'lines': per_line, 'decode': dec, 'version': spm.__version__}))
`;

interface PythonResult {
  load: number;
  whole: number;
  lines: number;
  decode: number;
  version: string;
  ids: number[];
}

function runSentencepiece(py: string, text: string): PythonResult | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-bench-'));
  try {
    const textPath = path.join(dir, 'text.txt');
    const idsPath = path.join(dir, 'ids.json');
    fs.writeFileSync(textPath, text);
    const r = spawnSync(py, ['-c', PY_SCRIPT, BUNDLED_TOKENIZER_PATH, textPath, idsPath], { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 20 });
    if (r.status !== 0) return undefined;
    const timings = JSON.parse(r.stdout.trim().split('\n').pop()!) as Omit<PythonResult, 'ids'>;
    return { ...timings, ids: JSON.parse(fs.readFileSync(idsPath, 'utf8')) as number[] };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchTokenizer(log: (line: string) => void): Promise<Record<string, number>> {
  const results: Record<string, number> = {};
  const loadSec = seconds(() => void Tokenizer.fromFile());
  results.tokenizer_load_ms = loadSec * 1e3;
  log(`tokenizer: load ${(loadSec * 1e3).toFixed(0)} ms (cold process)`);

  const { text, source } = mixedText();
  const bytes = Buffer.byteLength(text);
  const mb = bytes / 1e6;
  const lines = text.split('\n');
  log(`tokenizer: text ${mb.toFixed(2)} MB, ${lines.length} lines: ${source}`);

  // Cold: a fresh tokenizer sees this text for the first time (no cached words or pairs).
  const cold = Tokenizer.fromFile();
  let ids: number[] = [];
  const coldSec = seconds(() => (ids = cold.encode(text)));
  const warmSec = best(3, () => void cold.encode(text));
  const linesTok = Tokenizer.fromFile();
  const linesSec = seconds(() => {
    for (const line of lines) linesTok.encode(line);
  });
  const decodeSec = best(3, () => void cold.decode(ids));
  const streamSec = best(3, () => {
    const d = cold.decoder();
    for (const id of ids) d.push(id);
    d.flush();
  });
  results.encode_cold_mb_s = mb / coldSec;
  results.encode_warm_mb_s = mb / warmSec;
  results.encode_lines_mb_s = mb / linesSec;
  results.decode_mb_s = mb / decodeSec;
  results.stream_decode_mb_s = mb / streamSec;
  results.tokens = ids.length;
  log(`tokenizer: encode ${results.encode_cold_mb_s.toFixed(1)} MB/s cold, ${results.encode_warm_mb_s.toFixed(1)} MB/s warm, ` +
    `${results.encode_lines_mb_s.toFixed(1)} MB/s line by line (cold); ${ids.length} tokens`);
  log(`tokenizer: decode ${results.decode_mb_s.toFixed(1)} MB/s, streaming ${results.stream_decode_mb_s.toFixed(1)} MB/s`);

  // Scaling: synthetic text with almost no repeated words, so caches cannot hide a superlinear
  // merge loop; plus one 200 KB run without spaces, which is a single BPE segment.
  const small = syntheticText(200_000, 11);
  const large = syntheticText(2_000_000, 12);
  const timeFresh = (text: string, runs: number): number => {
    const toks = Array.from({ length: runs }, () => Tokenizer.fromFile());
    let b = Infinity;
    for (const t of toks) b = Math.min(b, seconds(() => void t.encode(text)));
    return b;
  };
  results.scaling_10x_time_ratio = timeFresh(large, 2) / timeFresh(small, 3);
  const noSpaces = syntheticText(200_000, 13).replace(/[ \n,]/g, '');
  results.encode_one_segment_mb_s = Buffer.byteLength(noSpaces) / 1e6 / timeFresh(noSpaces, 2);
  log(`tokenizer: 10× longer unrepeated text takes ${results.scaling_10x_time_ratio.toFixed(1)}× as long; ` +
    `a ${(Buffer.byteLength(noSpaces) / 1e3).toFixed(0)} KB text without spaces encodes at ${results.encode_one_segment_mb_s.toFixed(1)} MB/s`);

  const py = findPython();
  if (py === undefined) {
    log('tokenizer: python3 with sentencepiece not found; no comparison with the C++ library');
    return results;
  }
  const lib = runSentencepiece(py, text);
  if (lib === undefined) {
    log(`tokenizer: ${py} sentencepiece run failed; no comparison`);
    return results;
  }
  const same = lib.ids.length === ids.length && lib.ids.every((id, i) => id === ids[i]);
  results.sentencepiece_encode_mb_s = mb / lib.whole;
  results.sentencepiece_encode_lines_mb_s = mb / lib.lines;
  results.sentencepiece_decode_mb_s = mb / lib.decode;
  results.speedup_vs_sentencepiece_cold = lib.whole / coldSec;
  results.speedup_vs_sentencepiece_lines = lib.lines / linesSec;
  results.ids_match_sentencepiece = same ? 1 : 0;
  log(`tokenizer: sentencepiece ${lib.version} (C++ via ${py}): encode ${results.sentencepiece_encode_mb_s.toFixed(1)} MB/s whole, ` +
    `${results.sentencepiece_encode_lines_mb_s.toFixed(1)} MB/s line by line, decode ${results.sentencepiece_decode_mb_s.toFixed(1)} MB/s`);
  log(`tokenizer: ours / library: ${results.speedup_vs_sentencepiece_cold.toFixed(1)}× (whole text, cold), ` +
    `${results.speedup_vs_sentencepiece_lines.toFixed(1)}× (line by line); ids ${same ? 'identical' : 'DIFFERENT'}`);
  return results;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const results = await benchTokenizer((line) => console.log(line));
  console.log(JSON.stringify(results));
}
