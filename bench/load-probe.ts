/**
 * Child process of the memory benchmark: loads a model (every weight read), runs one decode step,
 * and reports load time and peak RSS. Run alone so nothing else inflates the peak.
 */
import { loadModel, type BackendName } from '../src/language-model.js';

const [dir, backend = 'js'] = process.argv.slice(2);
if (!dir) throw new Error('usage: load-probe DIR [backend]');
const baseline = process.resourceUsage().maxRSS * 1024;
const t0 = performance.now();
const lm = await loadModel(dir, { backend: backend as BackendName });
const loadMs = performance.now() - t0;
await lm.generate([5, 6, 7, 8], { temperature: 0, maxTokens: 2 });
const out = {
  loadMs,
  weightBytes: lm.files.weights.byteLength,
  maxRssBytes: process.resourceUsage().maxRSS * 1024,
  baselineRssBytes: baseline,
  backend: lm.backend,
};
await lm.close();
process.stdout.write(JSON.stringify(out) + '\n');
