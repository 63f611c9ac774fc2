// The dashboard in a real browser (Debian's chromium driven by playwright-core) against the
// real platform, one stack and one browser for the file. Through the dashboard's own forms:
// upload a dataset (a bad file shows the API's message, with its line), preview it, create an
// SFT job (a bad value shows the API's message); then follow it (the loss curve and the log
// grow while it runs; step and time axes), promote a checkpoint, deploy the model, scale it
// (a bad count shows the API's message), read usage; an RFT job's rollouts in the sample
// viewer; compare the two runs; another account's key reaches nothing by URL. Every page
// passes axe-core with no serious or critical violation. Screenshots of each page go to
// test-artifacts/dashboard/.
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDatasetPath } from '../../src/catalog/bundled.js';
import { type Json, type RestStack, startRestStack } from '../support/rest-stack.js';
import { createRolloutJob } from '../support/rft-job.js';

const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'dashboard');
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
/** For waits on the server's answer: generous, since the machine may be loaded. */
const SLOW = { timeout: 60_000 };

let stack: RestStack;
let profile: string;
let browser: BrowserContext;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  // The app as `npm run build:web` makes it, into dist/web where the control plane serves it.
  await build({ configFile: join(process.cwd(), 'web', 'vite.config.ts'), logLevel: 'warn' });
  stack = await startRestStack({ accounts: ['acme', 'other'] });
  profile = await mkdtemp(join(tmpdir(), 'temper-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

const call: RestStack['call'] = (...args) => stack.call(...args);

/** Page errors of every tab, checked at the end of each test. */
const pageErrors: string[] = [];

/** A new tab (its own sessionStorage: signed out) signed in with `key`. */
async function signedIn(key: string, check?: (page: Page) => Promise<void>): Promise<Page> {
  const page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${stack.base}/`);
  await page.getByLabel('API key').waitFor();
  await check?.(page);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Jobs' }).waitFor();
  return page;
}

const shot = (page: Page, name: string) =>
  page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

/** Serious and critical axe-core violations of the page as it is now, by page name. */
const violations: Record<string, string[]> = {};
async function axe(page: Page, name: string): Promise<void> {
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.addScriptTag({ path: AXE });
  const found = await page.evaluate(async () => {
    // In the page: the axe-core the tag above added, run over the whole document.
    const w = globalThis as unknown as {
      document: unknown;
      axe: {
        run(
          ctx: unknown,
          opts: object,
        ): Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }>;
      };
    };
    const r = await w.axe.run(w.document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  });
  violations[name] = found;
}

const points = async (page: Page, chart: string) =>
  Number((await page.locator(`[data-chart="${chart}"]`).getAttribute('data-points')) ?? 0);

/** Fills the dashboard form's field `name` (a select by its option value). */
async function fill(page: Page, fields: Record<string, string>): Promise<void> {
  for (const [name, value] of Object.entries(fields)) {
    const el = page.locator(`#f-${name}`);
    if ((await el.evaluate((e) => e.tagName)) === 'SELECT') await el.selectOption(value);
    else await el.fill(value);
  }
}

async function formError(page: Page): Promise<string> {
  // The API's answer may take a while on a loaded machine (an upload is validated off-thread).
  await expect.poll(() => page.locator('#form-error').textContent(), SLOW).toMatch(/.+/);
  return (await page.locator('#form-error').textContent()) ?? '';
}

const message = (json: Json) => String((json.error as { message?: string } | undefined)?.message);

describe('the dashboard in a browser', () => {
  it('uploads a dataset, creates and follows an SFT job, promotes, deploys and scales; another account sees none of it', async () => {
    const page = await signedIn(stack.keys.acme!, (p) => axe(p, 'sign-in'));
    await axe(page, 'jobs');
    await shot(page, 'jobs-empty');

    // A dataset through the upload form: a bad file first (the API's message, with the line).
    await page.getByRole('link', { name: 'Datasets', exact: true }).click();
    await page.getByRole('link', { name: 'Upload a dataset' }).click();
    await fill(page, { id: 'sure', kind: 'sft' });
    const good = readFileSync(
      catalogDatasetPath('accounts/temper/datasets/sure-answers-sft'),
      'utf8',
    );
    const bad = `${good.split('\n')[0]}\n{"messages": "not a list"}\n`;
    await page.locator('#f-file').setInputFiles({
      name: 'bad.jsonl',
      mimeType: 'application/jsonl',
      buffer: Buffer.from(bad),
    });
    await axe(page, 'dataset-form');
    await page.getByRole('button', { name: 'Create' }).click();
    const uploadError = await formError(page);
    expect(uploadError).toMatch(/line 2/);
    await shot(page, 'dataset-form-error');
    // The fixed file goes into the same dataset (left UPLOADING by the refused upload).
    await page.locator('#f-file').setInputFiles({
      name: 'good.jsonl',
      mimeType: 'application/jsonl',
      buffer: Buffer.from(good),
    });
    await page.getByRole('button', { name: 'Create' }).click();
    // The dataset's page: validation and its first lines.
    await page.getByRole('heading', { name: /^sure/ }).waitFor();
    await page.getByText(/^Valid sft dataset: \d+ examples\.$/).waitFor();
    const previewRows = page.getByRole('table', { name: 'Dataset preview' }).locator('tbody tr');
    await expect
      .poll(() => previewRows.count(), SLOW)
      .toBe(Math.min(20, good.trim().split('\n').length));
    expect(JSON.parse((await previewRows.first().locator('pre').textContent()) ?? '')).toEqual(
      JSON.parse(good.split('\n')[0]!),
    );
    await axe(page, 'dataset');
    await shot(page, 'dataset');

    // The SFT form: a value the API refuses shows the API's own message.
    await page.goto(`${stack.base}/#/new/sft`);
    await page.getByRole('heading', { name: 'New SFT job' }).waitFor();
    const fields = {
      id: 'sft-web',
      baseModel: 'accounts/temper/models/byte-lm-3m',
      dataset: 'accounts/acme/datasets/sure',
      outputModel: 'accounts/acme/models/sure-web',
      batchSize: '512',
      epochs: '2',
      learningRate: '5e-4',
      loraRank: '0',
      checkpointFrequency: '8',
    };
    await fill(page, { ...fields, epochs: '-3' });
    await axe(page, 'sft-form');
    await page.getByRole('button', { name: 'Create' }).click();
    const refused = await call(
      'POST',
      '/v1/accounts/acme/supervisedFineTuningJobs?supervisedFineTuningJobId=sft-web',
      {
        baseModel: fields.baseModel,
        dataset: fields.dataset,
        outputModel: fields.outputModel,
        batchSize: 512,
        epochs: -3,
        learningRate: 5e-4,
        loraRank: 0,
        checkpointFrequency: 8,
      },
    );
    expect(refused.status).toBe(400);
    expect(await formError(page)).toBe(message(refused.json));
    await shot(page, 'sft-form-error');
    await fill(page, { epochs: '2' });
    await page.getByRole('button', { name: 'Create' }).click();

    // The job page: the curve and the log grow while the job runs.
    await page.getByRole('heading', { name: /sft-web/ }).waitFor();
    const running = await expect
      .poll(
        async () => {
          const state = await page.locator('#job-state').textContent();
          const n = await points(page, 'Loss');
          return state === 'RUNNING' && n > 0 ? n : 0;
        },
        { timeout: 240_000, interval: 100 },
      )
      .toBeGreaterThan(0)
      .then(() => points(page, 'Loss'));
    const logLines = page.locator('#job-log li');
    const logWhileRunning = await logLines.count();
    expect(logWhileRunning).toBeGreaterThan(1);
    expect(await logLines.first().textContent()).toContain(
      'created supervisedFineTuningJobs/sft-web',
    );
    await axe(page, 'job-running');
    await shot(page, 'job-running');
    await expect
      .poll(() => points(page, 'Loss'), { timeout: 240_000, interval: 200 })
      .toBeGreaterThan(running);
    await expect
      .poll(() => page.locator('#job-state').textContent(), { timeout: 240_000, interval: 500 })
      .toBe('COMPLETED');
    // Every step the API stored is on the chart; the log holds what the API's log holds.
    const job = '/v1/accounts/acme/supervisedFineTuningJobs/sft-web';
    const stored = (await call('GET', `${job}/metrics`)).json.metrics as unknown[];
    await expect.poll(() => points(page, 'Loss'), SLOW).toBe(stored.length);
    await expect.poll(() => logLines.last().textContent(), SLOW).toContain('state COMPLETED');
    const apiLog = (await call('GET', `${job}/logs`)).json.logs as { id: string; text: string }[];
    expect(logWhileRunning).toBeLessThan(apiLog.length);
    for (const l of apiLog.filter((l) => !l.id.startsWith('state-')))
      expect(await page.locator(`#job-log li[data-id="${l.id}"]`).textContent()).toContain(l.text);
    // Render samples: tokens coloured by loss weight.
    await expect.poll(() => page.locator('.tok.trained').count(), SLOW).toBeGreaterThan(0);
    expect(await page.locator('.tok:not(.trained)').count()).toBeGreaterThan(0);
    // Smoothing, log scale and the time axes redraw every point.
    await page.locator('#smoothing').fill('0.6');
    await page.locator('#log-scale').check();
    for (const axis of ['time', 'elapsed', 'step']) {
      await page.locator('#x-axis').selectOption(axis);
      expect(await points(page, 'Loss')).toBe(stored.length);
    }
    await page.locator('#x-axis').selectOption('time');
    await expect
      .poll(() => page.locator('[data-chart="Loss"] .u-label').first().textContent())
      .toBe('time');
    await axe(page, 'job-completed');
    await shot(page, 'job-completed');
    await page.locator('#x-axis').selectOption('step');
    // The top of the page, for the README (docs/dashboard.png).
    await page.screenshot({
      path: join(ARTIFACTS, 'readme-job.png'),
      clip: { x: 0, y: 0, width: 1280, height: 560 },
    });

    // Promote the first servable checkpoint into a model; a bad id shows the API's message.
    const input = page.locator('[data-promote-input]').first();
    await input.waitFor();
    await input.fill('sure-web-promoted');
    await page.locator('[data-promote]').first().click();
    await page.getByText('created accounts/acme/models/sure-web-promoted').waitFor();
    expect((await call('GET', '/v1/accounts/acme/models/sure-web-promoted')).json).toMatchObject({
      name: 'accounts/acme/models/sure-web-promoted',
    });
    await input.fill('Not An Id!');
    await page.locator('[data-promote]').first().click();
    await expect
      .poll(() => page.locator('.promote .error').first().textContent(), SLOW)
      .toMatch(/.+/);
    await shot(page, 'job-promoted');

    // Deploy the promoted model from the models page; a bad id shows the API's message.
    await page.getByRole('link', { name: 'Models', exact: true }).click();
    await page.getByRole('cell', { name: 'sure-web-promoted' }).waitFor();
    const deployInput = page.locator('[data-deploy-input="sure-web-promoted"]');
    const deploy = page.locator('[data-deploy="sure-web-promoted"]');
    await deployInput.fill('Bad Id');
    await deploy.click();
    await expect
      .poll(() => page.locator('.promote .error').first().textContent(), SLOW)
      .toMatch(/.+/);
    await deployInput.fill('sure-web');
    await deploy.click();
    await page
      .getByText('created accounts/acme/deployments/sure-web')
      .waitFor({ timeout: 120_000 });
    await axe(page, 'models');
    await shot(page, 'models');
    const deployed = await call('GET', '/v1/accounts/acme/deployments/sure-web');
    expect(deployed.status).toBe(200);
    expect(JSON.stringify(deployed.json)).toContain('accounts/acme/models/sure-web-promoted');

    // The deployment's page: replicas, the hot-load ledger (a full model: no snapshot), scale.
    await page.getByRole('link', { name: 'Deployments', exact: true }).click();
    await page.getByRole('link', { name: 'sure-web', exact: true }).click();
    await page.getByRole('heading', { name: /^sure-web/ }).waitFor();
    expect(await page.locator('#replica-count').textContent()).toContain(
      `${deployed.json.replicaCount} (min ${deployed.json.minReplicaCount}, max ${deployed.json.maxReplicaCount})`,
    );
    await page.getByText('No snapshot loaded yet.').waitFor();
    await page.locator('#scale-max').fill('-1');
    await page.getByRole('button', { name: 'Scale' }).click();
    const badScale = await call('PATCH', '/v1/accounts/acme/deployments/sure-web:scale', {
      minReplicaCount: deployed.json.minReplicaCount,
      maxReplicaCount: -1,
    });
    expect(badScale.status).toBe(400);
    await expect
      .poll(() => page.locator('#scale-result').textContent(), SLOW)
      .toBe(message(badScale.json));
    await axe(page, 'deployment');
    await shot(page, 'deployment');

    // Usage: the training the job did, as the billing export counts it.
    await page.getByRole('link', { name: 'Usage', exact: true }).click();
    await page.getByRole('table', { name: 'Usage totals' }).waitFor();
    const csvRows =
      (
        await (
          await fetch(
            `${stack.base}/v1/accounts/acme/billing:exportMetrics?startTime=${new Date(Date.now() - 6 * 86_400_000).toISOString().slice(0, 10)}&endTime=${new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)}`,
            { headers: { authorization: `Bearer ${stack.keys.acme}` } },
          )
        ).text()
      )
        .trim()
        .split('\n').length - 1;
    expect(csvRows).toBeGreaterThan(0);
    await page.getByText(`${csvRows} events`).waitFor();
    await axe(page, 'usage');
    await shot(page, 'usage');
    // Trainer jobs: none in this account.
    await page.getByRole('link', { name: 'Trainer jobs', exact: true }).click();
    await page.getByRole('heading', { name: 'Trainer jobs' }).waitFor();
    await page.getByText('No jobs yet.').waitFor();
    await page.getByRole('link', { name: 'Datasets', exact: true }).click();
    await page.getByRole('link', { name: 'sure', exact: true }).waitFor();
    await axe(page, 'datasets');
    await shot(page, 'datasets');

    // Another account's tab: the job's URL answers not found, and its list is empty.
    const stranger = await signedIn(stack.keys.other!);
    expect(await stranger.getByText('No jobs yet.').count()).toBe(1);
    await stranger.goto(`${stack.base}/#/jobs/supervisedFineTuningJobs/sft-web`);
    await stranger.getByRole('heading', { name: 'Not found' }).waitFor();
    expect(await stranger.locator('[role=alert]').textContent()).toContain(
      'accounts/other/supervisedFineTuningJobs/sft-web not found',
    );
    await stranger.goto(`${stack.base}/#/datasets/sure`);
    await stranger.getByRole('heading', { name: 'Not found' }).waitFor();
    await shot(stranger, 'other-account');
    // The first tab is still signed in as acme: one account per tab.
    await page.reload();
    await page.getByRole('heading', { name: 'Datasets' }).waitFor();
    expect(await page.locator('#who').textContent()).toContain('accounts/acme');
    expect(pageErrors).toEqual([]);
  }, 600_000);

  it('opens an RFT job rollouts in the sample viewer, compares it with the SFT run, and every page passes axe', async () => {
    const { path: job } = await createRolloutJob(stack, 'rft-web', { epochs: 2 });
    const page = await signedIn(stack.keys.acme!);
    await page.goto(`${stack.base}/#/jobs/reinforcementFineTuningJobs/rft-web`);
    await expect
      .poll(() => page.locator('#job-state').textContent(), { timeout: 300_000, interval: 500 })
      .toBe('COMPLETED');
    await expect.poll(() => points(page, 'Reward'), SLOW).toBeGreaterThan(1);
    // Loaded afresh, the job page draws every stored row from the metrics index.html asked
    // for before the app's code ran: one request for them, not a second one from the app.
    const stored = ((await call('GET', `${job}/metrics`)).json.metrics as unknown[]).length;
    await page.reload();
    await expect.poll(() => points(page, 'Reward'), SLOW).toBe(stored);
    const metricReads = await page.evaluate(
      () =>
        performance
          .getEntriesByType('resource')
          .filter((e) => e.name.includes('/metrics?format=columns')).length,
    );
    expect(metricReads).toBe(1);
    // All rollouts, then only step 2's.
    const all = (await call('GET', `${job}/rollouts?pageSize=200`)).json as {
      rollouts: { step: number; completion: string; score: number }[];
      totalSize: number;
    };
    await expect
      .poll(() => page.locator('#rollout-count').textContent(), SLOW)
      .toBe(`${all.totalSize} rollouts`);
    await page.locator('#rollout-step').fill('2');
    await page.getByRole('button', { name: 'Filter' }).click();
    const step2 = all.rollouts.filter((r) => r.step === 2);
    await expect
      .poll(() => page.locator('#rollout-count').textContent(), SLOW)
      .toBe(`${step2.length} rollouts`);
    const rows = page.getByRole('table', { name: 'Rollouts' }).locator('tbody tr');
    expect(await rows.count()).toBe(step2.length);
    // Open the first: the viewer shows its whole completion and score.
    await rows.first().locator('.rollout-open').click();
    const viewer = page.getByRole('complementary', { name: 'Rollout' });
    await viewer.waitFor();
    expect(await viewer.locator('.completion').textContent()).toBe(step2[0]!.completion);
    expect(await viewer.textContent()).toContain(step2[0]!.score.toFixed(4));
    // The log has a line per step of scored rollouts.
    await expect
      .poll(() => page.locator('#job-log li[data-id^="rollouts-"]').count(), SLOW)
      .toBe(new Set(all.rollouts.map((r) => r.step)).size);
    await axe(page, 'rft-job');
    await shot(page, 'rft-rollouts');

    // Deploy the job's LoRA output through the deployment form: its adapter is hot-loaded on
    // top of the base, and the deployment's page shows that snapshot in the hot-load ledger.
    const output = (await call('GET', '/v1/accounts/acme/models/rft-web-out')).json;
    expect(output.state).toBe('READY');
    await page.goto(
      `${stack.base}/#/new/deployment?baseModel=${encodeURIComponent('accounts/acme/models/rft-web-out')}`,
    );
    await page.getByRole('heading', { name: 'New deployment' }).waitFor();
    expect(await page.locator('#f-baseModel').inputValue()).toBe(
      'accounts/acme/models/rft-web-out',
    );
    await fill(page, { id: 'rft-web' });
    await axe(page, 'deployment-form');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.getByRole('heading', { name: /^rft-web/ }).waitFor({ timeout: 120_000 });
    const ledger = (await call('GET', '/v1/accounts/acme/deployments/rft-web/ledger')).json
      .snapshots as { identity: string; replicas: { replica_id: string }[] }[];
    expect(ledger.length).toBe(1);
    expect(ledger[0]!.replicas.length).toBeGreaterThan(0);
    const ledgerRows = page.getByRole('table', { name: 'Hot-load ledger' }).locator('tbody tr');
    expect(await ledgerRows.count()).toBe(1);
    const ledgerText = (await ledgerRows.first().textContent()) ?? '';
    expect(ledgerText).toContain(ledger[0]!.identity);
    for (const r of ledger[0]!.replicas) expect(ledgerText).toContain(`${r.replica_id}: ready`);
    await axe(page, 'deployment-lora');
    await shot(page, 'deployment-lora');

    // The RFT and DPO forms: what the API refuses (a missing evaluator, a beta out of range
    // on a dataset of the wrong kind) shows the API's own message for the same body.
    const formCases: [string, string, Record<string, string>, Json][] = [
      [
        'rft',
        'reinforcementFineTuningJobs?reinforcementFineTuningJobId=rft-form',
        { id: 'rft-form', dataset: 'accounts/acme/datasets/rft-web-prompts' },
        { dataset: 'accounts/acme/datasets/rft-web-prompts' },
      ],
      [
        'dpo',
        'dpoJobs?dpoJobId=dpo-form',
        { id: 'dpo-form', dataset: 'accounts/acme/datasets/sure', beta: '0.9' },
        { dataset: 'accounts/acme/datasets/sure', beta: 0.9 },
      ],
    ];
    for (const [kind, path, fields, body] of formCases) {
      await page.goto(`${stack.base}/#/new/${kind}`);
      await page.getByRole('heading', { name: `New ${kind.toUpperCase()} job` }).waitFor();
      await fill(page, { ...fields, baseModel: 'accounts/temper/models/byte-lm-3m' });
      await page.getByRole('button', { name: 'Create' }).click();
      const api = await call('POST', `/v1/accounts/acme/${path}`, {
        ...body,
        baseModel: 'accounts/temper/models/byte-lm-3m',
      });
      expect(api.status).toBe(400);
      expect(await formError(page)).toBe(message(api.json));
      await axe(page, `${kind}-form`);
      await shot(page, `${kind}-form-error`);
    }

    // Compare: pick both runs; every metric row of each is on the loss chart.
    await page.goto(`${stack.base}/#/jobs/reinforcementFineTuningJobs/rft-web`);
    await page.getByRole('link', { name: 'Compare with other runs' }).click();
    await page.getByRole('heading', { name: 'Compare runs' }).waitFor();
    expect(await page.getByLabel('compare rft-web').isChecked()).toBe(true);
    await page.getByLabel('compare sft-web').check();
    await page.getByRole('button', { name: 'Compare' }).click();
    await expect.poll(() => page.url(), SLOW).toContain('supervisedFineTuningJobs:sft-web');
    const rftRows = (await call('GET', `${job}/metrics`)).json.metrics as unknown[];
    const sftRows = (
      await call('GET', '/v1/accounts/acme/supervisedFineTuningJobs/sft-web/metrics')
    ).json.metrics as unknown[];
    await expect.poll(() => points(page, 'Loss'), SLOW).toBe(rftRows.length + sftRows.length);
    const legend = (await page.locator('[data-chart="Loss"] .u-legend').textContent()) ?? '';
    expect(legend).toContain('rft-web');
    expect(legend).toContain('sft-web');
    await axe(page, 'compare');
    await shot(page, 'compare');

    expect(pageErrors).toEqual([]);
    // Every page visited in both tests: no serious or critical accessibility violation.
    expect(Object.keys(violations).length).toBeGreaterThan(10);
    expect(violations).toEqual(Object.fromEntries(Object.keys(violations).map((k) => [k, []])));
  }, 600_000);
});
