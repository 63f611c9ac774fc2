// The dashboard in a real browser (Debian's chromium driven by playwright-core) against the
// real platform running a real SFT job: sign in with a key, the jobs list, the job page's loss
// curve growing while the job runs (fed by the events stream), render samples, promote a
// checkpoint into a model, and another account's key reaching nothing of it by URL.
// Screenshots of each page go to test-artifacts/dashboard/.
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDatasetPath } from '../../src/catalog/bundled.js';
import { type RestStack, startRestStack } from '../support/rest-stack.js';

const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'dashboard');

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

/** A new tab (its own sessionStorage: signed out) signed in with `key`. */
async function signedIn(key: string): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${stack.base}/`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Jobs' }).waitFor();
  expect(errors).toEqual([]);
  return page;
}

const shot = (page: Page, name: string) =>
  page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

const lossPoints = async (page: Page) =>
  Number((await page.locator('[data-chart="Loss"]').getAttribute('data-points')) ?? 0);

describe('the dashboard in a browser', () => {
  it('follows a running SFT job, shows its samples and promotes a checkpoint; another account sees none of it', async () => {
    await stack.uploadDataset(
      'sure',
      readFileSync(catalogDatasetPath('accounts/temper/datasets/sure-answers-sft'), 'utf8'),
    );
    const created = await call(
      'POST',
      '/v1/accounts/acme/supervisedFineTuningJobs?supervisedFineTuningJobId=sft-web',
      {
        baseModel: 'accounts/temper/models/byte-lm-3m',
        dataset: 'accounts/acme/datasets/sure',
        outputModel: 'accounts/acme/models/sure-web',
        batchSize: 512,
        epochs: 2,
        learningRate: 5e-4,
        loraRank: 0,
        checkpointFrequency: 8,
      },
    );
    expect(created.status, JSON.stringify(created.json)).toBe(200);

    const page = await signedIn(stack.keys.acme!);
    const row = page.getByRole('row').filter({ hasText: 'sft-web' });
    await expect.poll(() => row.count()).toBe(1);
    expect(await row.textContent()).toContain('SFT');
    await shot(page, 'jobs');

    await row.getByRole('link', { name: 'sft-web' }).click();
    await page.getByRole('heading', { name: /sft-web/ }).waitFor();
    // The curve grows while the job runs: points seen during RUNNING, then more.
    const running = await expect
      .poll(
        async () => {
          const state = await page.locator('#job-state').textContent();
          const points = await lossPoints(page);
          return state === 'RUNNING' && points > 0 ? points : 0;
        },
        { timeout: 240_000, interval: 100 },
      )
      .toBeGreaterThan(0)
      .then(() => lossPoints(page));
    await shot(page, 'job-running');
    await expect
      .poll(() => lossPoints(page), { timeout: 240_000, interval: 200 })
      .toBeGreaterThan(running);
    await expect
      .poll(() => page.locator('#job-state').textContent(), { timeout: 240_000, interval: 500 })
      .toBe('COMPLETED');
    // Every step the API stored is on the chart.
    const stored = (await call('GET', '/v1/accounts/acme/supervisedFineTuningJobs/sft-web/metrics'))
      .json.metrics as unknown[];
    await expect.poll(() => lossPoints(page)).toBe(stored.length);
    // Render samples: tokens coloured by loss weight.
    await expect.poll(() => page.locator('.tok.trained').count()).toBeGreaterThan(0);
    expect(await page.locator('.tok:not(.trained)').count()).toBeGreaterThan(0);
    // Smoothing and log scale redraw without errors.
    await page.locator('#smoothing').fill('0.6');
    await page.locator('#log-scale').check();
    await shot(page, 'job-completed');
    // The top of the page, for the README (docs/dashboard.png).
    await page.screenshot({
      path: join(ARTIFACTS, 'readme-job.png'),
      clip: { x: 0, y: 0, width: 1280, height: 560 },
    });

    // Promote the first servable checkpoint into a model.
    const input = page.locator('[data-promote-input]').first();
    await input.waitFor();
    await input.fill('sure-web-promoted');
    await page.locator('[data-promote]').first().click();
    await page.getByText('created accounts/acme/models/sure-web-promoted').waitFor();
    expect((await call('GET', '/v1/accounts/acme/models/sure-web-promoted')).json).toMatchObject({
      name: 'accounts/acme/models/sure-web-promoted',
    });
    // A bad id shows the API's own message.
    await input.fill('Not An Id!');
    await page.locator('[data-promote]').first().click();
    await expect.poll(() => page.locator('.promote .error').first().textContent()).toMatch(/.+/);
    await shot(page, 'job-promoted');

    await page.getByRole('link', { name: 'Models', exact: true }).click();
    await page.getByRole('cell', { name: 'sure-web-promoted' }).waitFor();
    // Deploy the promoted model; a bad id shows the API's message.
    const deployInput = page.locator('[data-deploy-input="sure-web-promoted"]');
    const deploy = page.locator('[data-deploy="sure-web-promoted"]');
    await deployInput.fill('Bad Id');
    await deploy.click();
    await expect.poll(() => page.locator('.promote .error').first().textContent()).toMatch(/.+/);
    await deployInput.fill('sure-web');
    await deploy.click();
    await page
      .getByText('created accounts/acme/deployments/sure-web')
      .waitFor({ timeout: 120_000 });
    const deployed = await call('GET', '/v1/accounts/acme/deployments/sure-web');
    expect(deployed.status).toBe(200);
    expect(JSON.stringify(deployed.json)).toContain('accounts/acme/models/sure-web-promoted');
    await shot(page, 'models');
    await page.getByRole('link', { name: 'Deployments', exact: true }).click();
    await page.getByRole('cell', { name: 'sure-web', exact: true }).waitFor();
    await shot(page, 'deployments');
    await page.getByRole('link', { name: 'Datasets', exact: true }).click();
    await page.getByRole('cell', { name: 'sure', exact: true }).waitFor();
    await shot(page, 'datasets');

    // Another account's tab: the job's URL answers not found, and its list is empty.
    const stranger = await signedIn(stack.keys.other!);
    expect(await stranger.getByText('No jobs yet.').count()).toBe(1);
    await stranger.goto(`${stack.base}/#/jobs/supervisedFineTuningJobs/sft-web`);
    await stranger.getByRole('heading', { name: 'Not found' }).waitFor();
    expect(await stranger.locator('[role=alert]').textContent()).toContain(
      'accounts/other/supervisedFineTuningJobs/sft-web not found',
    );
    await shot(stranger, 'other-account');
    // The first tab is still signed in as acme: one account per tab.
    await page.reload();
    await page.getByRole('heading', { name: 'Datasets' }).waitFor();
    expect(await page.locator('#who').textContent()).toContain('accounts/acme');
  }, 600_000);

  it('opens an RFT job rollouts, filtered by step, in the sample viewer', async () => {
    await stack.uploadDataset(
      'questions',
      ['What is the capital of Peru?', 'What color is snow?', 'What is 2+2?']
        .map((q) => JSON.stringify({ messages: [{ role: 'user', content: q }] }))
        .join('\n'),
    );
    expect(
      (
        await call('POST', '/v1/accounts/acme/evaluators', {
          evaluatorId: 'long-answers',
          evaluator: {
            source: 'export default ({ completion }) => Math.min(1, completion.length / 40);',
            sourceFilename: 'score.js',
          },
        })
      ).status,
    ).toBe(200);
    const created = await call(
      'POST',
      '/v1/accounts/acme/reinforcementFineTuningJobs?reinforcementFineTuningJobId=rft-web',
      {
        baseModel: 'accounts/temper/models/byte-lm-3m',
        dataset: 'accounts/acme/datasets/questions',
        evaluator: 'accounts/acme/evaluators/long-answers',
        outputModel: 'accounts/acme/models/questions-web',
        responseCandidatesCount: 4,
        maxTokens: 24,
        temperature: 1,
        loraRank: 4,
        epochs: 2,
      },
    );
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const page = await signedIn(stack.keys.acme!);
    await page.goto(`${stack.base}/#/jobs/reinforcementFineTuningJobs/rft-web`);
    await expect
      .poll(() => page.locator('#job-state').textContent(), { timeout: 300_000, interval: 500 })
      .toBe('COMPLETED');
    await expect
      .poll(async () =>
        Number((await page.locator('[data-chart="Reward"]').getAttribute('data-points')) ?? 0),
      )
      .toBeGreaterThan(1);
    // All rollouts, then only step 2's.
    const all = (
      await call(
        'GET',
        '/v1/accounts/acme/reinforcementFineTuningJobs/rft-web/rollouts?pageSize=200',
      )
    ).json as {
      rollouts: { step: number; completion: string; score: number }[];
      totalSize: number;
    };
    await page.getByText(`${all.totalSize} rollouts`).waitFor();
    await page.locator('#rollout-step').fill('2');
    await page.getByRole('button', { name: 'Filter' }).click();
    const step2 = all.rollouts.filter((r) => r.step === 2);
    await page.getByText(`${step2.length} rollouts`).waitFor();
    const rows = page.getByRole('table', { name: 'Rollouts' }).locator('tbody tr');
    expect(await rows.count()).toBe(step2.length);
    // Open the first: the viewer shows its whole completion and score.
    await rows.first().locator('.rollout-open').click();
    const viewer = page.getByRole('complementary', { name: 'Rollout' });
    await viewer.waitFor();
    expect(await viewer.locator('.completion').textContent()).toBe(step2[0]!.completion);
    expect(await viewer.textContent()).toContain(step2[0]!.score.toFixed(4));
    await shot(page, 'rft-rollouts');
  }, 600_000);
});
