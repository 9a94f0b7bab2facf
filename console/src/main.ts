// The console's entry point: finds out who the visitor is (`GET /api/v1/whoami`), asks for an API key when the
// server wants one, then shows the page named by the location's hash.

import './style.css';
import { ApiError, apiUrl, describeError, requestJson, setUnauthorizedHandler } from './api';
import { forgetApiKey, storedApiKey } from './auth';
import { h, replace } from './dom';
import { executionPage } from './execution_page';
import { executionsPage } from './executions_page';
import { healthPage } from './health_page';
import type { Page } from './page';
import { parseRoute, type RouteName } from './router';
import { RunPage } from './run_page';
import { sessionPage } from './session_page';
import { sessionsPage } from './sessions_page';
import { signInPage } from './signin_page';
import type { Identity } from './types';

const app = document.getElementById('app') as HTMLElement;
const main = h('main', { id: 'main-content', tabindex: -1 });

let identity: Identity | null = null;
// The Run page lives as long as the sign-in: its code and a run in progress survive visits to other pages.
let runPage: RunPage | null = null;
let current: Page | null = null;

const NAV: { label: string; href: string; routes: RouteName[] }[] = [
  { label: 'Run', href: '#/run', routes: ['run'] },
  { label: 'Executions', href: '#/executions', routes: ['executions', 'execution'] },
  { label: 'Sessions', href: '#/sessions', routes: ['sessions', 'session'] },
  { label: 'Health', href: '#/health', routes: ['health'] },
];
const navLinks = NAV.map((item) => ({ item, element: h('a', { href: item.href }, item.label) }));

function shell(content: Node, signedIn: Identity | null): void {
  const skip = h('a', {
    class: 'skip-link',
    href: '#main-content',
    // The hash is the router's: move focus without changing it.
    onclick: (event: Event) => { event.preventDefault(); main.focus(); },
  }, 'Skip to main content');
  const who = signedIn
    ? h('div', { class: 'identity' },
        signedIn.tenant
          ? [h('span', null, 'Signed in as ', h('strong', { class: 'tenant' }, signedIn.tenant)),
             signedIn.admin ? h('span', { class: 'badge badge-admin' }, 'admin') : null,
             h('button', { type: 'button', class: 'button button-small button-on-dark', onclick: () => signOut(null) }, 'Sign out')]
          : h('span', null, 'Open server (no API keys)'))
    : null;
  const header = h('header', { class: 'topbar' },
    h('div', { class: 'topbar-inner' },
      h('a', { class: 'brand', href: '#/run' }, 'python-executor', h('span', { class: 'brand-sub' }, ' console')),
      signedIn ? h('nav', { 'aria-label': 'Main' }, h('ul', null, navLinks.map(({ element }) => h('li', null, element)))) : null,
      who));
  const footer = h('footer', { class: 'footer' },
    h('p', null, 'Every action here is an ordinary call of the REST API: ',
      h('a', { href: apiUrl('/docs/') }, 'API documentation'), '.'));
  replace(main, content);
  replace(app, skip, header, main, footer);
}

function route(moveFocus: boolean): void {
  if (!identity) return;
  const target = parseRoute(location.hash);
  if (current && current !== runPage) current.dispose?.();
  let page: Page;
  switch (target.name) {
    case 'run':
      runPage ??= new RunPage();
      runPage.enter(target.query);
      page = runPage;
      break;
    case 'executions':
      page = executionsPage(target.query, { identity });
      break;
    case 'execution':
      page = executionPage(target.id ?? '');
      break;
    case 'sessions':
      page = sessionsPage();
      break;
    case 'session':
      page = sessionPage(target.id ?? '');
      break;
    case 'health':
      page = healthPage();
      break;
    default:
      page = {
        title: 'Not found',
        element: h('div', { class: 'page' }, h('h1', { tabindex: -1 }, 'Page not found'),
          h('p', null, 'The console has no page at this address. ', h('a', { href: '#/run' }, 'Run code'), ' instead.')),
      };
  }
  current = page;
  replace(main, page.element);
  document.title = `${page.title} · python-executor console`;
  for (const { item, element } of navLinks) {
    if (item.routes.includes(target.name)) element.setAttribute('aria-current', 'page');
    else element.removeAttribute('aria-current');
  }
  // After following a link, focus goes to the new page's heading, so screen readers read where they landed and
  // Tab continues from the top of the page.
  if (moveFocus) page.element.querySelector<HTMLElement>('h1')?.focus();
}

function showSignIn(message: string | null): void {
  shell(signInPage(message, (who) => {
    identity = who;
    shell(h('div'), identity);
    route(true);
  }), null);
  document.title = 'Sign in · python-executor console';
}

function signOut(message: string | null): void {
  forgetApiKey();
  if (current && current !== runPage) current.dispose?.();
  runPage?.dispose();
  runPage = null;
  current = null;
  identity = null;
  showSignIn(message);
}

async function start(): Promise<void> {
  setUnauthorizedHandler((message) => signOut(`The server no longer accepts the API key (${message}). Sign in again.`));
  window.addEventListener('hashchange', () => route(true));
  const key = storedApiKey();
  try {
    // Without a stored key this asks as nobody: a server without API keys answers, and no sign-in is needed.
    identity = await requestJson<Identity>('GET', '/api/v1/whoami', { key, handle401: true });
    shell(h('div'), identity);
    route(false);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      forgetApiKey();
      showSignIn(key ? 'The API key of this tab is no longer accepted. Sign in again.' : null);
    } else {
      shell(h('div', { class: 'page' }, h('h1', null, 'The server did not answer'),
        h('div', { role: 'alert', class: 'alert alert-error' }, describeError(error)),
        h('p', null, h('button', { type: 'button', class: 'button', onclick: () => location.reload() }, 'Try again'))), null);
    }
  }
}

void start();
