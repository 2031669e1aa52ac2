// The dashboard's two data routes, with the gateway's key: read from sessionStorage (this tab only), sent as
// "Authorization: Bearer", never put in a URL, a log or localStorage.

const KEY_ITEM = 'clawbot.dashboard.key';

/** The server wants a key (401): none was given, or the one given was refused. */
export class NeedKey extends Error {
  constructor(message, hadKey) {
    super(message);
    this.hadKey = hadKey;
  }
}

/** Any other answer that is not a 2xx. */
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_ITEM) || '';
  } catch {
    return '';  // storage refused (a private window's policy): the key lives only as long as the page
  }
}

let pageKey = '';

export function useKey(key) {
  pageKey = key;
  try {
    if (key) sessionStorage.setItem(KEY_ITEM, key);
    else sessionStorage.removeItem(KEY_ITEM);
  } catch {
    // kept in pageKey only
  }
}

/** GET `path` as JSON. Throws NeedKey on a 401, HttpError with the server's message on another failure. */
export async function getJson(path) {
  const key = pageKey || storedKey();
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  const res = await fetch(path, { headers, cache: 'no-store', credentials: 'omit' });
  if (res.ok) return res.json();
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error && typeof body.error.message === 'string') message = body.error.message;
  } catch {
    // not JSON: the status line says enough
  }
  if (res.status === 401) throw new NeedKey(message, Boolean(key));
  throw new HttpError(res.status, message);
}
