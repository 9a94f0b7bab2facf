// The API key lives in sessionStorage only: it survives a reload of the tab but not closing it, is never written
// to disk by a "remember me", and is not shared with other tabs. It is sent as a bearer token on every API call
// (no cookies, so no other site can make the browser use it).

const STORAGE_KEY = 'python-executor-console.api-key';

export function storedApiKey(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be disabled by the browser's settings: then the key lives as long as the page.
    return memoryKey;
  }
}

let memoryKey: string | null = null;

export function storeApiKey(key: string): void {
  memoryKey = key;
  try {
    sessionStorage.setItem(STORAGE_KEY, key);
  } catch {
    /* kept in memory only */
  }
}

export function forgetApiKey(): void {
  memoryKey = null;
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    /* nothing stored */
  }
}
