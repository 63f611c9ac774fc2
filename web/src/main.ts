/**
 * The dashboard: hash routes (#/jobs, #/jobs/{collection}/{id}, #/trainers, #/compare?jobs=,
 * #/new/{sft|dpo|rft|dataset|deployment}, #/models, #/datasets[/{id}], #/deployments[/{id}],
 * #/usage), each page built from the public REST API with the signed-in key.
 */
import { ApiFailure, session, signIn, signOut } from './api';
import { h } from './dom';
import { datasetsPage, deploymentsPage, modelsPage } from './pages/collections';
import { comparePage } from './pages/compare';
import { datasetPage, deploymentPage } from './pages/details';
import { datasetForm, deploymentForm, JOB_FORMS, jobForm } from './pages/forms';
import { jobPage } from './pages/job';
import { jobsPage } from './pages/jobs';
import { usagePage } from './pages/usage';
import './style.css';

/** What a page leaves running (an events stream) is stopped when the route changes. */
let cleanup: (() => void) | undefined;

function signInPage(app: HTMLElement): void {
  const key = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', required: true });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    { class: 'card signin', 'aria-label': 'Sign in' },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste an API key of your account. It is kept in this tab only.'),
    h('label', { for: 'api-key' }, 'API key'),
    key,
    h('button', { type: 'submit' }, 'Sign in'),
    error,
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    signIn(key.value.trim())
      .then(() => {
        location.hash = '#/jobs';
        void route();
      })
      .catch((err: Error) => {
        error.textContent = err.message;
      });
  });
  app.replaceChildren(form);
}

function header(): void {
  const s = session();
  const nav = document.getElementById('nav')!;
  const who = document.getElementById('who')!;
  if (!s) {
    nav.replaceChildren();
    who.replaceChildren();
    return;
  }
  const link = (href: string, text: string) =>
    h('a', { href, ...(location.hash.startsWith(href) ? { 'aria-current': 'page' } : {}) }, text);
  nav.replaceChildren(
    link('#/jobs', 'Jobs'),
    link('#/trainers', 'Trainer jobs'),
    link('#/compare', 'Compare'),
    link('#/models', 'Models'),
    link('#/datasets', 'Datasets'),
    link('#/deployments', 'Deployments'),
    link('#/usage', 'Usage'),
  );
  who.replaceChildren(
    h('span', {}, `accounts/${s.account}`),
    h(
      'button',
      {
        type: 'button',
        class: 'link',
        onclick: () => {
          signOut();
          location.hash = '#/';
          void route();
        },
      },
      'Sign out',
    ),
  );
}

async function route(): Promise<void> {
  cleanup?.();
  cleanup = undefined;
  const app = document.getElementById('app')!;
  header();
  const s = session();
  if (!s) return signInPage(app);
  const [path = '', search = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean);
  const arg = parts[1] !== undefined ? decodeURIComponent(parts[1]) : undefined;
  try {
    if (parts[0] === 'jobs' && parts.length === 3)
      cleanup = await jobPage(app, s, parts[1]!, decodeURIComponent(parts[2]!));
    else if (parts[0] === 'compare')
      cleanup = await comparePage(app, s, new URLSearchParams(search));
    else if (parts[0] === 'new' && arg && arg in JOB_FORMS) await jobForm(app, s, arg);
    else if (parts[0] === 'new' && arg === 'dataset') datasetForm(app, s);
    else if (parts[0] === 'new' && arg === 'deployment')
      await deploymentForm(app, s, new URLSearchParams(search));
    else if (parts[0] === 'trainers') await jobsPage(app, s, 'rlorTrainerJobs');
    else if (parts[0] === 'models') await modelsPage(app, s);
    else if (parts[0] === 'datasets' && arg) await datasetPage(app, s, arg);
    else if (parts[0] === 'datasets') await datasetsPage(app, s);
    else if (parts[0] === 'deployments' && arg) await deploymentPage(app, s, arg);
    else if (parts[0] === 'deployments') await deploymentsPage(app, s);
    else if (parts[0] === 'usage') await usagePage(app, s);
    else await jobsPage(app, s);
  } catch (err) {
    const status = err instanceof ApiFailure ? err.httpStatus : 0;
    app.replaceChildren(
      h(
        'section',
        { class: 'card' },
        h('h1', {}, status === 404 ? 'Not found' : 'Something went wrong'),
        h('p', { class: 'error', role: 'alert' }, (err as Error).message),
        h('a', { href: '#/jobs' }, 'Back to jobs'),
      ),
    );
  }
}

window.addEventListener('hashchange', () => void route());
void route();
