/**
 * bench:dashboard — the job page with 100,000 metric points in headless Chromium.
 *
 * The platform (test/support/rest-stack: Temporal dev server, SQLite store, control plane
 * serving the built dashboard) holds a completed SFT job whose store has 100,000 metric rows
 * (loss every step, eval loss every 100th). Each round opens a fresh tab on the job page and
 * times, from the navigation's start, the first animation frame in which the loss chart holds
 * every point (the page signs in, loads the app, reads the job and its metrics, as columns, and
 * draws them; the rest of the page loads after that frame). The anchor, measured first in each
 * round in a fresh browser context on a same-origin page that runs no script, while the server
 * is otherwise idle: what a client does to get the same rows, `GET {job}/metrics` as JSON,
 * fetched and parsed. Also reported: the same fetch of `?format=columns` (what the page reads)
 * and the page's JS heap once painted (CDP). Goal: paint ≤ 2× the JSON fetch, and under 1 s.
 *
 *   npm run bench:dashboard [-- --rounds 5]
 */
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { build } from 'vite';
import { startRestStack } from '../test/support/rest-stack.js';
import { median } from './support/common.js';

const POINTS = 100_000;
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1] ?? 5) || 5;
const log = (line: string) => process.stderr.write(`${line}\n`);

await build({ configFile: join(process.cwd(), 'web', 'vite.config.ts'), logLevel: 'warn' });
const stack = await startRestStack({ accounts: ['bench'] });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  // A finished job as the workflow leaves it, with its metric rows in the store.
  const store = stack.platform.store;
  const start = Date.parse('2026-01-01T00:00:00Z');
  const row = await store.create('supervisedFineTuningJobs', 'bench', 'big', {
    state: 'JOB_STATE_COMPLETED',
    status: { code: 'OK', message: '' },
    baseModel: 'accounts/temper/models/byte-lm-3m',
    dataset: 'accounts/bench/datasets/none',
    jobProgress: { step: POINTS, totalSteps: POINTS, percent: 100 },
    completedTime: new Date(start + POINTS * 1000).toISOString(),
  });
  for (let s = 1; s <= POINTS; s += 10_000)
    await store.putMetrics(
      row.name,
      Array.from({ length: Math.min(10_000, POINTS - s + 1) }, (_, i) => {
        const step = s + i;
        const loss = 2 * Math.exp(-step / 20_000) + 0.05 * Math.sin(step / 7);
        return {
          step,
          values: {
            'loss:mean': loss,
            'lr:mean': 1e-4,
            ...(step % 100 === 0 ? { 'eval_loss:mean': loss + 0.1 } : {}),
          },
          time: new Date(start + step * 1000).toISOString(),
        };
      }),
    );
  const key = stack.keys.bench!;
  const url = `${stack.base}/#/jobs/supervisedFineTuningJobs/big`;
  const paints: number[] = [];
  const heaps: number[] = [];
  const fetches: number[] = [];
  const columnFetches: number[] = [];
  for (let r = 0; r < rounds; r++) {
    // The anchor: the JSON rows as a client reads them, then the columns, on a quiet page.
    const quiet = await browser.newContext();
    const blank = await quiet.newPage();
    await blank.goto(`${stack.base}/assets/none`); // a 404 on the same origin: no app, no requests
    // (No named functions in here: tsx would wrap them in a helper the page lacks.)
    const [fetchMs, columnsMs] = await blank.evaluate(
      async ([k, path]) => {
        const ms: number[] = [];
        for (const columns of [false, true]) {
          const t0 = performance.now();
          const res = await fetch(columns ? `${path}?format=columns` : path!, {
            headers: { authorization: `Bearer ${k}` },
          });
          const body = (await res.json()) as { metrics?: unknown[]; steps?: number[] };
          if ((columns ? body.steps : body.metrics)?.length !== 100_000)
            throw new Error(`not every row from ${res.url}`);
          ms.push(performance.now() - t0);
        }
        return ms as [number, number];
      },
      [key, `/v1/${row.name}/metrics`],
    );
    await quiet.close();

    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // Signed in before the page loads (the key lives in sessionStorage).
    await context.addInitScript(
      ([k]) =>
        sessionStorage.setItem('temper.session', JSON.stringify({ key: k, account: 'bench' })),
      [key],
    );
    const page = await context.newPage();
    await page.goto(url, { waitUntil: 'commit' });
    const painted = await page.waitForFunction(
      (n) => {
        // In the page: the first frame in which the loss chart holds every point.
        const w = globalThis as unknown as {
          document: { querySelector(s: string): { getAttribute(a: string): string | null } | null };
          requestAnimationFrame(cb: () => void): void;
        };
        return w.document.querySelector('[data-chart="Loss"]')?.getAttribute('data-points') ===
          String(n)
          ? new Promise<number>((done) => w.requestAnimationFrame(() => done(performance.now())))
          : 0; // not yet: polled again next frame
      },
      POINTS,
      { polling: 'raf', timeout: 120_000 },
    );
    const paintMs = (await painted.jsonValue()) as number;
    // Where the time went: each request's start and end, from the navigation's start.
    const timings = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .map((e) => {
          const r = e as unknown as { name: string; startTime: number; responseEnd: number };
          return `${new URL(r.name).pathname.split('/').slice(-1)[0]} ${r.startTime.toFixed(0)}-${r.responseEnd.toFixed(0)}`;
        })
        .join(', '),
    );
    log(`  requests: ${timings}`);
    const cdp = await context.newCDPSession(page);
    await cdp.send('HeapProfiler.collectGarbage');
    await cdp.send('Performance.enable');
    const metrics = (await cdp.send('Performance.getMetrics')).metrics;
    const heap = metrics.find((m) => m.name === 'JSHeapUsedSize')?.value ?? 0;
    paints.push(paintMs);
    fetches.push(fetchMs);
    columnFetches.push(columnsMs);
    heaps.push(heap / 2 ** 20);
    log(
      `round ${r + 1}: first paint ${paintMs.toFixed(0)} ms, fetch JSON ${fetchMs.toFixed(0)} ms (columns ${columnsMs.toFixed(0)} ms), heap ${(heap / 2 ** 20).toFixed(1)} MiB`,
    );
    await context.close();
  }
  const paint = median(paints);
  const fetchMs = median(fetches);
  console.log(
    JSON.stringify({
      bench: 'dashboard',
      points: POINTS,
      rounds,
      first_paint_ms: Math.round(paint),
      fetch_json_ms: Math.round(fetchMs),
      fetch_columns_ms: Math.round(median(columnFetches)),
      paint_over_fetch: Number((paint / fetchMs).toFixed(2)),
      page_heap_mib: Number(median(heaps).toFixed(1)),
    }),
  );
} finally {
  await browser.close();
  await stack.close();
}
