/**
 * Takes docs/chat-page.png, the README's picture of the chat page: the demo model served, one chat
 * exchange in Debian's chromium through puppeteer-core. Not a test (node --test loads this file and
 * it does nothing without --run): `npm run build && node dist/test/chat-page-screenshot.js --run`.
 */
import * as path from 'node:path';
import puppeteer from 'puppeteer-core';
import { loadModel } from '../src/language-model.js';
import { createServer } from '../src/server/index.js';
import { PROJECT_ROOT } from './shared.js';

async function main(): Promise<void> {
  const lm = await loadModel(undefined, { backend: 'js' });
  const server = createServer(lm, {});
  const { url } = await server.listen(0);
  const browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 640, deviceScaleFactor: 1 });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
    await page.goto(url + '/', { waitUntil: 'load' });
    await page.waitForFunction(() => document.getElementById('model-name')!.textContent === 'fortune-demo');
    await page.$eval('#seed', (el) => ((el as HTMLInputElement).value = '4'));
    await page.$eval('#system', (el) => ((el as HTMLTextAreaElement).value = 'Answer with a fortune cookie.'));
    for (const message of ['What does the future hold?', 'And after that?']) {
      const done = await page.$$eval('#messages li.assistant[data-finish]', (l) => l.length);
      await page.type('#message', message);
      await page.keyboard.press('Enter');
      await page.waitForFunction((n) => document.querySelectorAll('#messages li.assistant[data-finish]').length === n + 1, { timeout: 60_000 }, done);
    }
    const out = path.join(PROJECT_ROOT, 'docs', 'chat-page.png');
    await page.screenshot({ path: out as `${string}.png` });
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
    await server.close(1000);
    await lm.close();
  }
}

if (process.argv.includes('--run')) await main();
