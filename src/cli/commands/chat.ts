/** `grok-ts chat`: an interactive loop for people, history kept in the KV cache. */
import * as readline from 'node:readline';
import { AbortError, ContextLengthError } from '../../errors.js';
import { str, type Command } from '../command.js';
import { CONSTRAINT_HELP, CONSTRAINT_OPTIONS, constraintOptions } from '../constraint-options.js';
import { GENERATION_HELP, GENERATION_OPTIONS, generationOptions, MODEL_HELP, MODEL_OPTIONS, openModel } from '../model-options.js';

export const chatCommand: Command = {
  name: 'chat',
  summary: 'talk to the model interactively (/reset to start over, Ctrl-C stops a reply, Ctrl-D quits)',
  help: `Usage: grok-ts chat [options]

Grok-1 is a base model, so turns are written as a plain transcript ("User: …", "Assistant: …")
that the model continues; a reply ends at EOS, when the model starts a new turn, or at
--max-tokens. The conversation stays in the KV cache: each turn only processes its new text.

When the conversation outgrows the model's context, the oldest turns are dropped to make room
(the system message stays); chat says so once.

Commands: /reset forgets the conversation, /quit (or Ctrl-D) leaves. Ctrl-C interrupts a reply.

      --system TEXT     a system message at the start of the transcript

${GENERATION_HELP}

${CONSTRAINT_HELP}

${MODEL_HELP}
`,
  options: { ...MODEL_OPTIONS, ...GENERATION_OPTIONS, ...CONSTRAINT_OPTIONS, system: { type: 'string' } },
  async run(ctx) {
    const options = { ...generationOptions(ctx, { temperature: 0.8 }), ...constraintOptions(ctx) };
    const system = str(ctx, 'system');
    const lm = await openModel(ctx);
    const tty = (ctx.stdout as { isTTY?: boolean }).isTTY === true;
    const dim = (text: string) => (tty ? `\x1b[2m${text}\x1b[22m` : text);
    let told = false;
    const session = lm.chat({
      ...(system !== undefined ? { system } : {}),
      onTrim: ({ contextLength }) => {
        if (told) return;
        told = true;
        ctx.stdout.write(dim(`(the conversation is longer than the model's ${contextLength}-token context: the oldest turns are dropped from now on${system ? '; the system message stays' : ''})`) + '\n');
      },
    });
    const rl = readline.createInterface({ input: ctx.stdin, output: ctx.stdout, terminal: (ctx.stdin as { isTTY?: boolean }).isTTY === true });
    let reply: AbortController | undefined;
    rl.on('SIGINT', () => {
      if (reply) reply.abort(new AbortError('reply interrupted'));
      else {
        ctx.stdout.write('\n(Ctrl-D or /quit to leave)\n');
        rl.prompt();
      }
    });
    const onOuterAbort = () => reply?.abort(new AbortError('interrupted'));
    ctx.signal.addEventListener('abort', onOuterAbort);
    rl.setPrompt('> ');
    try {
      ctx.stdout.write(`grok-ts chat (${lm.isDemo ? 'built-in demo model' : lm.files.path}, ${lm.backend} backend). /reset, /quit, Ctrl-C stops a reply.\n`);
      rl.prompt();
      for await (const line of rl) {
        const text = line.trim();
        if (text === '/quit' || text === '/exit') break;
        if (text === '/reset') {
          session.reset();
          ctx.stdout.write('(conversation reset)\n');
          rl.prompt();
          continue;
        }
        if (text === '') {
          rl.prompt();
          continue;
        }
        reply = new AbortController();
        try {
          for await (const chunk of session.send(text, { ...options, signal: reply.signal })) ctx.stdout.write(chunk.text);
          ctx.stdout.write('\n');
        } catch (err) {
          if (err instanceof AbortError) ctx.stdout.write(' [interrupted]\n');
          else if (err instanceof ContextLengthError) ctx.stdout.write(dim(`(${err.message})`) + '\n');
          else throw err;
        } finally {
          reply = undefined;
        }
        if (ctx.signal.aborted) break;
        rl.prompt();
      }
      return 0;
    } finally {
      ctx.signal.removeEventListener('abort', onOuterAbort);
      rl.close();
      await lm.close();
    }
  },
};
