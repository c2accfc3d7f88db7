/** `grok-ts tokenize` and `grok-ts detokenize`: text ↔ token ids with the SentencePiece tokenizer. */
import { UsageError } from '../../errors.js';
import { Tokenizer } from '../../tokenizer/sentencepiece.js';
import { str, type Command, type CommandContext } from '../command.js';
import { readAll } from '../stdin.js';

const TOKENIZER_HELP = `  --tokenizer PATH   a SentencePiece tokenizer.model (default: the bundled Grok-1 tokenizer)`;

function loadTokenizer(ctx: CommandContext): Tokenizer {
  const path = str(ctx, 'tokenizer');
  return path === undefined ? Tokenizer.fromFile() : Tokenizer.fromFile(path);
}

/** The positional text, several words joined by one space, or all of standard input for `-`. */
async function inputText(ctx: CommandContext, what: string): Promise<string> {
  if (ctx.positionals.length === 0) throw new UsageError(`give the ${what} to convert, or - to read standard input`);
  if (ctx.positionals.length === 1 && ctx.positionals[0] === '-') return readAll(ctx.stdin);
  return ctx.positionals.join(' ');
}

export const tokenizeCommand: Command = {
  name: 'tokenize',
  summary: 'print the token ids of a text',
  help: `Usage: grok-ts tokenize [--tokenizer PATH] [--json] [--pieces] [--bos] [--eos] TEXT

Prints the ids of TEXT as comma-separated numbers (the form detokenize reads). TEXT "-" reads
standard input exactly, trailing newline included; several arguments are joined by one space.

  --json             print a JSON array of ids (with --pieces: an array of {"id", "piece"})
  --pieces           print each id with its piece, one per line: ID<TAB>PIECE as a JSON string
  --bos              prepend the BOS id (the official Grok-1 runner does not)
  --eos              append the EOS id
${TOKENIZER_HELP}
`,
  options: {
    tokenizer: { type: 'string' },
    json: { type: 'boolean' },
    pieces: { type: 'boolean' },
    bos: { type: 'boolean' },
    eos: { type: 'boolean' },
  },
  allowPositionals: true,
  async run(ctx) {
    const text = await inputText(ctx, 'TEXT');
    const tok = loadTokenizer(ctx);
    const ids = tok.encode(text, { addBos: ctx.values.bos === true, addEos: ctx.values.eos === true });
    if (ctx.values.pieces === true) {
      const rows = ids.map((id) => ({ id, piece: tok.idToPiece(id) }));
      if (ctx.values.json === true) ctx.stdout.write(JSON.stringify(rows) + '\n');
      else ctx.stdout.write(rows.map((r) => `${r.id}\t${JSON.stringify(r.piece)}\n`).join(''));
    } else if (ctx.values.json === true) {
      ctx.stdout.write(JSON.stringify(ids) + '\n');
    } else {
      ctx.stdout.write(ids.join(',') + '\n');
    }
    return 0;
  },
};

/** Ids separated by commas and/or whitespace, optionally inside [ ] (a JSON array). */
export function parseIdList(raw: string): number[] {
  const body = raw.trim().replace(/^\[/, '').replace(/\]$/, '');
  const parts = body.split(/[\s,]+/).filter((p) => p !== '');
  return parts.map((p) => {
    const v = Number(p);
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(v)) throw new UsageError(`"${p}" is not a token id (a non-negative integer)`, 'ids');
    return v;
  });
}

export const detokenizeCommand: Command = {
  name: 'detokenize',
  summary: 'print the text of token ids',
  help: `Usage: grok-ts detokenize [--tokenizer PATH] IDS

Prints the text of IDS, given as comma- or space-separated numbers or a JSON array; "-" reads
them from standard input. The text is written exactly, with a newline added only on a terminal.

${TOKENIZER_HELP}
`,
  options: { tokenizer: { type: 'string' } },
  allowPositionals: true,
  async run(ctx) {
    const ids = parseIdList(await inputText(ctx, 'IDS'));
    const tok = loadTokenizer(ctx);
    const text = tok.decode(ids);
    ctx.stdout.write(text);
    if ((ctx.stdout as { isTTY?: boolean }).isTTY) ctx.stdout.write('\n');
    return 0;
  },
};
