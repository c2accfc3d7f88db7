/** Runs `grok-ts` in-process with captured output: what the CLI tests share. */
import { Readable, Writable } from 'node:stream';
import { main } from '../src/cli/main.js';

export class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

export async function runCli(args: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(args, { stdout, stderr, stdin: Readable.from([Buffer.from(stdin)]) });
  return { code, out: stdout.text, err: stderr.text };
}
