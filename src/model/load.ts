/**
 * Opens a model from what users have: an official ckpt-0 directory (or its parent), a GGUF file
 * (single, gguf-split shards, or raw .partNofM byte splits), or — with no path — the bundled demo.
 * Returns config, lazily-read weights and, where the files carry one, the tokenizer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configFromJson, GROK1, makeConfig, type GrokConfig } from '../config.js';
import { FormatError } from '../errors.js';
import { openGguf, looksLikeGguf } from '../formats/gguf-split.js';
import type { GgufMetadata } from '../formats/gguf.js';
import { openCheckpoint } from '../formats/xai-checkpoint.js';
import type { TensorStore } from '../tensor/tensor.js';
import { grokWeightsFromCheckpoint, type GrokWeights } from './weights.js';
import { configFromGguf, grokWeightsFromGguf } from './weights-gguf.js';

export interface ModelFiles {
  readonly path: string;
  readonly format: 'ckpt-0' | 'gguf';
  readonly config: Readonly<GrokConfig>;
  readonly weights: GrokWeights;
  readonly store: TensorStore;
  /** GGUF files embed their tokenizer; a ckpt-0 uses the official tokenizer.model. */
  readonly ggufMetadata?: GgufMetadata;
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

function readJsonFile(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FormatError({ file, expected: 'a readable JSON file', found: (err as Error).message, cause: err });
  }
}

export function openModelFiles(p: string): ModelFiles {
  if (looksLikeGguf(p)) return openGgufFiles(p);
  const store = openCheckpoint(p);
  try {
    const cfgPath = findCheckpointConfig(store.path);
    const config = cfgPath ? configFromJson(readJsonFile(cfgPath), cfgPath) : makeConfig(GROK1);
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
