/** `grok-ts inspect`: what a checkpoint holds and what running it needs. */
import { inspectModel, UsageError } from '../../index.js';
import { type Command } from '../command.js';
import { formatBytes } from '../progress.js';

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'show a checkpoint\'s config, tensors and the memory a run needs',
  help: `Usage: grok-ts inspect PATH [--json]

PATH is a ckpt-0 directory (or its parent) or a GGUF file (first shard or .part1ofN). Prints the
config, the parameter count, each tensor's name, dtype, shape and bytes, the memory a run would
need, and for GGUF the files, metadata and bytes per quantisation type.

  --json    machine-readable output
`,
  options: { json: { type: 'boolean' } },
  allowPositionals: true,
  async run(ctx) {
    if (ctx.positionals.length !== 1) throw new UsageError('give exactly one PATH to inspect');
    const { tensors, gguf, ...summary } = inspectModel(ctx.positionals[0]!);
    const c = summary.config;
    if (ctx.values.json === true) {
      ctx.stdout.write(JSON.stringify({ ...summary, ...(gguf ? { gguf } : { tensors }) }, null, 1) + '\n');
      return 0;
    }
    const kvPerToken = summary.kvCacheBytesPerToken;
    const out: string[] = [];
    out.push(`${summary.path} (${summary.format})`);
    out.push(`config: ${Object.entries(c).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    out.push(`parameters: ${summary.parameters.toLocaleString('en-US')} (${(summary.parameters / 1e9).toFixed(3)} B)`);
    out.push(`weights: ${formatBytes(summary.weightBytes)} in ${tensors.length} tensors`);
    out.push(`KV cache: ${formatBytes(kvPerToken)} per token, ${formatBytes(kvPerToken * c.sequenceLen)} for the full ${c.sequenceLen}-token context`);
    out.push(`memory for a run at full context: about ${formatBytes(summary.memoryForFullContext)}`);
    const r = summary.residency;
    out.push(`resident under --memory-budget: at least ${formatBytes(r.minimumBytes)} (non-expert weights ${formatBytes(r.nonExpertBytes)} + ${c.numSelectedExperts} experts × ${formatBytes(r.expertBytes)}); all of it: ${formatBytes(r.totalBytes)}`);
    out.push(`read per decoded token: ${formatBytes(r.bytesPerToken)} (non-expert ${formatBytes(r.nonExpertBytes)} + selected experts ${formatBytes(r.expertBytesPerToken)}); under a budget, the experts missing from the cache come from disk`);
    if (gguf) {
      out.push(`files (${gguf.split === 'none' ? 'single file' : gguf.split}):`);
      for (const f of gguf.files) out.push(`  ${f.path}: GGUF v${f.version}, ${formatBytes(f.bytes)}, ${f.metadata} metadata keys, ${f.tensors} tensors, data at ${f.dataOffset} (alignment ${f.alignment})`);
      out.push(`types: ${Object.entries(gguf.types).map(([t, a]) => `${t} ×${a.tensors} (${formatBytes(a.bytes)})`).join(', ')}`);
      out.push('metadata:');
      for (const m of gguf.metadata) out.push(`  ${m.key} (${m.type}) = ${m.value}`);
    }
    out.push('');
    const w = Math.max(...tensors.map((t) => t.name.length));
    for (const t of tensors) out.push(`${t.name.padEnd(w)}  ${t.dtype.padEnd(8)} ${`[${t.shape.join(', ')}]`.padEnd(22)} ${formatBytes(t.bytes)}`);
    ctx.stdout.write(out.join('\n') + '\n');
    return 0;
  },
};
