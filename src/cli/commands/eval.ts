/** `grok-ts eval`: logits for given token ids, as JSON. */
import { UsageError } from '../../errors.js';
import { parseIds, str, type Command } from '../command.js';
import { MODEL_HELP, MODEL_OPTIONS, openModel } from '../model-options.js';

export const evalCommand: Command = {
  name: 'eval',
  summary: 'print the logits of a token sequence as JSON',
  help: `Usage: grok-ts eval --ids 5,6,7 [--positions last|all] [--model PATH]

Runs one forward pass over the ids (a fresh sequence at positions 0..T-1) and prints
{"logits": [[...], ...]}: one row per position with --positions all, else the last row only.

  --ids LIST           comma-separated token ids (required)
  --positions WHICH    last (default) or all

${MODEL_HELP}
`,
  options: { ...MODEL_OPTIONS, ids: { type: 'string' }, positions: { type: 'string' } },
  async run(ctx) {
    const raw = str(ctx, 'ids');
    if (raw === undefined) throw new UsageError('--ids is required', 'ids');
    const ids = parseIds(raw);
    const positions = str(ctx, 'positions') ?? 'last';
    if (positions !== 'last' && positions !== 'all') throw new UsageError(`--positions must be last or all, got "${positions}"`, 'positions');
    const lm = await openModel(ctx);
    try {
      if (ids.length > lm.config.sequenceLen) throw new UsageError(`${ids.length} ids exceed the context of ${lm.config.sequenceLen}`, 'ids');
      const rows = lm.logits(ids, positions === 'all');
      ctx.stdout.write(`{"logits": [${rows.map((r) => `[${Array.from(r).join(', ')}]`).join(',\n')}]}\n`);
      return 0;
    } finally {
      await lm.close();
    }
  },
};
