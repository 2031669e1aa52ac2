// The pages' requests to the server that sent them, with the gateway's key: read from sessionStorage (this tab
// only), sent as "Authorization: Bearer", never put in a URL, a log or localStorage. Shared by the dashboard
// and the chat (one key per tab for both).

const KEY_ITEM = 'clawbot.key';

/** The server wants a key (401): none was given, or the one given was refused. */
export class NeedKey extends Error {
  constructor(message, hadKey) {
    super(message);
    this.hadKey = hadKey;
  }
}

/** Any other answer that is not a 2xx: `explanation` says it in words a user understands. */
export class HttpError extends Error {
  constructor(status, message, retryAfterS = 0) {
    super(message);
    this.status = status;
    this.retryAfterS = retryAfterS;
    this.explanation = explainStatus(status, message, retryAfterS);
    this.retryable = status === 429 || status >= 500;
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

/** The request headers every call carries: the key, when there is one. */
export function authHeaders(extra = {}) {
  const key = pageKey || storedKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** What a refusal means for the person in front of the page, and whether (when) to try again. */
export function explainStatus(status, message, retryAfterS = 0) {
  const when = retryAfterS > 0 ? `in ${retryAfterS} s` : 'in a few seconds';
  switch (status) {
    case 401:
      return `The server needs a valid API key (${message}).`;
    case 403:
      return `The gateway refuses this request: ${message}. Trying again will not help: ask the gateway's operator to allow it.`;
    case 429:
      return `Too many requests for this key right now (${message}). Try again ${when}.`;
    case 502:
    case 504:
      return `The node that was answering failed (${message}). Try again: another node may answer.`;
    case 503:
      return `No node can answer right now: they are busy, starting or down (${message}). Try again ${when}.`;
    default:
      return status >= 500 ? `The server failed (${status}: ${message}). Try again.` : `${message} (${status})`;
  }
}

/** Throws NeedKey on a 401 and HttpError on any other failure, with the server's own message. */
export async function failure(res, hadKey = Boolean(pageKey || storedKey())) {
  let message = `${res.status} ${res.statusText}`.trim();
  try {
    const body = await res.json();
    if (body && body.error && typeof body.error.message === 'string') message = body.error.message;
  } catch {
    // not JSON: the status line says enough
  }
  if (res.status === 401) return new NeedKey(message, hadKey);
  return new HttpError(res.status, message, Number(res.headers.get('retry-after')) || 0);
}

/** fetch() on this server with the key; `init.headers` are added to it. */
export function apiFetch(path, init = {}) {
  return fetch(path, { cache: 'no-store', credentials: 'omit', ...init, headers: authHeaders(init.headers) });
}

/** GET `path` as JSON. Throws NeedKey on a 401, HttpError with the server's message on another failure. */
export async function getJson(path) {
  const res = await apiFetch(path, { headers: { Accept: 'application/json' } });
  if (res.ok) return res.json();
  throw await failure(res);
}

/** POST `body` as JSON to `path` and read the JSON answer (same failures as getJson). */
export async function postJson(path, body) {
  const res = await apiFetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.ok) return res.json();
  throw await failure(res);
}
