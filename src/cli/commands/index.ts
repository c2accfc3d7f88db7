/** Every `grok-ts` command, in the order `--help` lists them. */
import type { Command } from '../command.js';
import { benchCommand } from './bench.js';
import { chatCommand } from './chat.js';
import { convertCommand } from './convert.js';
import { evalCommand } from './eval.js';
import { generateCommand } from './generate.js';
import { inspectCommand } from './inspect.js';
import { serveCommand } from './serve.js';
import { detokenizeCommand, tokenizeCommand } from './tokenize.js';

export const COMMANDS: Command[] = [generateCommand, chatCommand, evalCommand, inspectCommand, serveCommand, convertCommand, tokenizeCommand, detokenizeCommand, benchCommand];
