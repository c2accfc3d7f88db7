/**
 * Opens a model from what users have: an official ckpt-0 directory (or its parent), a GGUF file
 * (single, gguf-split shards, or raw .partNofM byte splits), or — with no path — the bundled demo.
 * Returns config, lazily-read weights and, where the files carry one, the tokenizer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configFromJson, GROK1, makeConfig, type GrokConfig } from '../config.js';
import { FileAccessError, FormatError } from '../errors.js';
import { looksLikeGguf, namedLikeGguf, openGguf } from '../formats/gguf-split.js';
import type { GgufMetadata } from '../formats/gguf.js';
import { fileKind, readRegularFile } from '../formats/tensor-file.js';
import { checkpointDir, openCheckpoint } from '../formats/xai-checkpoint.js';
import { isSafetensorsDir, openSafetensorsStore, SAFETENSORS_INDEX } from '../formats/safetensors.js';
import type { TensorStore } from '../tensor/tensor.js';
import { grokWeightsFromCheckpoint } from './weights-ckpt.js';
import type { GrokWeights } from './weights.js';
import { configFromGguf, grokWeightsFromGguf } from './weights-gguf.js';
import { configFromHfJson, grokWeightsFromSafetensors } from './weights-safetensors.js';

export interface ModelFiles {
  readonly path: string;
  readonly format: 'ckpt-0' | 'gguf' | 'safetensors';
  readonly config: Readonly<GrokConfig>;
  readonly weights: GrokWeights;
  readonly store: TensorStore;
  /** GGUF files embed their tokenizer; a ckpt-0 uses the official tokenizer.model. */
  readonly ggufMetadata?: GgufMetadata;
  /** A tokenizer.model that came with the model (a Hugging Face directory's). */
  readonly tokenizerFile?: string;
  close(): void;
}

/** The package root (dist/src/model/ → three levels up). */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The bundled demo model: its ckpt-0 files gzip-compressed, byte-identical once decompressed (assets/demo-fortune/BUNDLED.md). */
export const DEMO_MODEL_DIR = path.join(PACKAGE_ROOT, 'assets', 'demo-fortune');

/** Finds the config.json that belongs to a ckpt-0 directory: beside ckpt-0 or inside it. */
function findCheckpointConfig(ckptDir: string): string | undefined {
  for (const p of [path.join(path.dirname(ckptDir), 'config.json'), path.join(ckptDir, 'config.json')]) {
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** A config.json is a few hundred bytes; anything near this is not one. */
const MAX_CONFIG_BYTES = 1 << 20;

function readJsonFile(file: string): unknown {
  const bytes = readRegularFile(file, MAX_CONFIG_BYTES, 'a readable JSON file');
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new FormatError({ file, expected: 'a readable JSON file', found: (err as Error).message, cause: err });
  }
}

const MODEL_PATH = 'a ckpt-0 directory (or its parent), a GGUF file or a safetensors directory';

export function openModelFiles(p: string): ModelFiles {
  if (namedLikeGguf(p)) return openGgufFiles(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    throw new FileAccessError({ file: p, expected: MODEL_PATH, found: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory (ENOENT)' : (err as Error).message, cause: err });
  }
  if (st.isFile()) {
    if (looksLikeGguf(p)) return openGgufFiles(p);
    if (p.endsWith('.safetensors') || path.basename(p) === SAFETENSORS_INDEX) return openSafetensorsFiles(path.dirname(p), path.basename(p) === SAFETENSORS_INDEX ? undefined : p);
    throw new FormatError({ file: p, expected: MODEL_PATH, found: 'a file that does not start with the GGUF magic' });
  }
  if (!st.isDirectory()) throw new FileAccessError({ file: p, expected: MODEL_PATH, found: fileKind(st) });
  if (isSafetensorsDir(p)) return openSafetensorsFiles(p);
  // The config first: it bounds what each compressed tensor file may expand to (openCheckpoint).
  const cfgPath = findCheckpointConfig(checkpointDir(p));
  const config = cfgPath ? configFromJson(readJsonFile(cfgPath), cfgPath) : makeConfig(GROK1);
  const store = openCheckpoint(p, { config });
  try {
    const weights = grokWeightsFromCheckpoint(store, config);
    return { path: store.path, format: 'ckpt-0', config, weights, store, close: () => store.close() };
  } catch (err) {
    store.close();
    throw err;
  }
}

function openGgufFiles(p: string): ModelFiles {
  const g = openGguf(p);
  try {
    const config = configFromGguf(g.metadata, g.path, g.store);
    const weights = grokWeightsFromGguf(g.store, config);
    return { path: g.path, format: 'gguf', config, weights, store: g.store, ggufMetadata: g.metadata, close: () => g.close() };
  } catch (err) {
    g.close();
    throw err;
  }
}

/** A Hugging Face directory: config.json, safetensors (one file or an index and shards), maybe tokenizer.model. */
function openSafetensorsFiles(dir: string, file?: string): ModelFiles {
  const cfgPath = path.join(dir, 'config.json');
  const config = configFromHfJson(readJsonFile(cfgPath), cfgPath);
  // The file given, when one was: never another file of its directory.
  const store = openSafetensorsStore(file ?? dir);
  try {
    const weights = grokWeightsFromSafetensors(store, config);
    const tok = path.join(dir, 'tokenizer.model');
    return { path: dir, format: 'safetensors', config, weights, store, ...(fs.existsSync(tok) ? { tokenizerFile: tok } : {}), close: () => store.close() };
  } catch (err) {
    store.close();
    throw err;
  }
}
