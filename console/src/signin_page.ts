// Signing in: the key is checked with `GET /api/v1/whoami` before it is kept, so a wrong key is reported here,
// at once, rather than on the first page that needs it.

import { AlertArea } from './alerts';
import { ApiError, requestJson } from './api';
import { storeApiKey } from './auth';
import { field, h } from './dom';
import type { Identity } from './types';

export function signInPage(message: string | null, onSignedIn: (identity: Identity) => void): HTMLElement {
  const alerts = new AlertArea();
  if (message) alerts.error(new Error(message));
  const keyInput = h('input', {
    type: 'password',
    name: 'api-key',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
  });
  const button = h('button', { type: 'submit', class: 'button button-primary' }, 'Sign in');
  const form = h('form', { class: 'signin-form', onsubmit: (event: Event) => { event.preventDefault(); void signIn(); } },
    field('API key', keyInput, 'Kept in this browser tab only (sessionStorage), and sent with each API call.'),
    h('div', { class: 'actions' }, button));

  async function signIn(): Promise<void> {
    const key = keyInput.value.trim();
    if (!key) {
      alerts.error(new Error('Enter an API key.'));
      keyInput.focus();
      return;
    }
    button.disabled = true;
    alerts.clear();
    try {
      const identity = await requestJson<Identity>('GET', '/api/v1/whoami', { key, handle401: true });
      storeApiKey(key);
      onSignedIn(identity);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        alerts.error(new Error(`This API key was not accepted (${error.message}). Check the key and try again.`));
      } else {
        alerts.error(error, 'Signing in');
      }
      keyInput.select();
      keyInput.focus();
    } finally {
      button.disabled = false;
    }
  }

  const page = h('div', { class: 'page signin' },
    h('h1', { tabindex: -1 }, 'Sign in'),
    h('p', { class: 'lead' }, 'This server requires an API key. Sign in with one of its keys to run code and see your executions and sessions.'),
    alerts.element,
    form);
  queueMicrotask(() => keyInput.focus());
  return page;
}
