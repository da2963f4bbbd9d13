// The REST client. The console uses exactly the public API (/api/v1) with the key the
// user signed in with; the key lives in sessionStorage (or localStorage when the user
// asked to be remembered) and never leaves this origin.

const BASE = "/api/v1";
const KEY_NAME = "touchgate.key";

export class ApiError extends Error {
  constructor(status, code, message, details, params) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    // The values the error's sentence needs (errors.js renders code + params).
    this.params = params || {};
  }

  /** The field errors of a 4xx as [{field, code, message, params}] (empty when there are none). */
  get fieldErrors() {
    return Array.isArray(this.details) ? this.details.filter((d) => d && d.field) : [];
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || "";
}

export function storeKey(key, remember) {
  forgetKey();
  (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
  localStorage.removeItem(KEY_NAME);
}

let onUnauthorized = () => {};

/** Called with the error when the server says the key is no longer valid. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function apiUrl(path, query) {
  let url = BASE + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
    const qs = params.toString();
    if (qs) url += (url.includes("?") ? "&" : "?") + qs;
  }
  return url;
}

/** One call: the Response when it is a success, an ApiError otherwise. */
async function send(method, path, { body, headers = {}, key, query } = {}) {
  const all = { Accept: "application/json", ...headers };
  const token = key ?? storedKey();
  if (token) all.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(apiUrl(path, query), { method, headers: all, body });
  } catch (err) {
    throw new ApiError(0, "network", String(err && err.message ? err.message : err), null);
  }
  if (res.ok) return res;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const e = (data && data.error) || {};
  const err = new ApiError(res.status, e.code || `http_${res.status}`, e.message || text.slice(0, 300) || res.statusText, e.details ?? null, e.params);
  if (res.status === 401 && key === undefined) onUnauthorized(err);
  throw err;
}

async function json(res) {
  if (res.status === 204) return null;
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

export async function request(method, path, body, { key, query } = {}) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return json(await send(method, path, { body: payload, headers, key, query }));
}

/** A multipart upload (a plugin package): the browser sets the boundary. */
export async function upload(path, form) {
  return json(await send("POST", path, { body: form }));
}

/**
 * A file the API streams (a CSV export), saved under the name the server gives
 * (Content-Disposition) or `fallbackName`. The key travels in a header, so this
 * cannot be a plain link.
 */
export async function download(path, query, fallbackName) {
  const res = await send("GET", path, { query, headers: { Accept: "*/*" } });
  const blob = await res.blob();
  const disposition = res.headers.get("Content-Disposition") || "";
  const named = disposition.match(/filename\*?=(?:UTF-8'')?"?([^";]+)"?/i);
  const name = named ? decodeURIComponent(named[1]) : fallbackName;
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return name;
}

export const api = {
  get: (path, query) => request("GET", path, undefined, { query }),
  post: (path, body) => request("POST", path, body ?? {}),
  put: (path, body) => request("PUT", path, body),
  patch: (path, body) => request("PATCH", path, body),
  del: (path) => request("DELETE", path),
};

/** Every item of a list endpoint (they page with limit/offset). */
export async function listAll(path, query = {}) {
  const items = [];
  const limit = 500;
  for (let offset = 0; ; offset += limit) {
    const page = await api.get(path, { ...query, limit, offset });
    items.push(...page.items);
    if (page.items.length < limit || items.length >= page.total) return items;
  }
}
