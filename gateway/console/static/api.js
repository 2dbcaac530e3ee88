// The admin API. The admin key lives in this module's variable only: never in storage, a
// cookie or a URL; it goes out as a bearer header, and is gone when the tab closes.

let adminKey = null;

export class ApiError extends Error {
  constructor(status, error) {
    super(error && error.message ? String(error.message) : `The gateway answered ${status}.`);
    this.status = status;
    this.param = error ? error.param : null;
    this.code = error ? error.code : null;
  }
}

export function signIn(key) {
  adminKey = key;
}

export function signOut() {
  adminKey = null;
}

export function signedIn() {
  return adminKey !== null;
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${adminKey}` };
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { message: `The gateway could not be reached (${err.message}).` });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, data && data.error);
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") q.set(name, value);
  }
  return q.toString();
}
