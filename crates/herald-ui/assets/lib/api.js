// The public API, as the SDKs call it: `/api/v1/...` with the token as a
// bearer header (never a cookie), JSON in and out. The page has no route of
// its own; `GET /metrics` is the one call outside /api/v1.

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail ? `${detail} (${status})` : `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/** A 422's `detail` list as one line: "url: invalid URL; …". */
function describe(detail) {
  if (!Array.isArray(detail)) return detail ? String(detail) : "";
  return detail
    .map((d) => `${(d.loc || []).filter((l) => l !== "body" && l !== "query").join(".") || "request"}: ${d.msg}`)
    .join("; ");
}

/** A fresh idempotency key, so a POST retried by the browser runs once. */
function idempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return `ui_${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Query parameters without the empty ones. */
function queryString(query) {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, { body, query } = {}) {
    const headers = { Authorization: `Bearer ${this.token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method === "POST") headers["idempotency-key"] = idempotencyKey();
    const resp = await fetch(`/api/v1${path}${queryString(query)}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        throw new ApiError(resp.status, "not_json", text.slice(0, 200));
      }
    }
    if (!resp.ok) throw new ApiError(resp.status, data && data.code, describe(data && data.detail));
    return data;
  }

  get(path, query) {
    return this.request("GET", path, { query });
  }
  post(path, body = {}) {
    return this.request("POST", path, { body });
  }
  put(path, body) {
    return this.request("PUT", path, { body });
  }
  patch(path, body) {
    return this.request("PATCH", path, { body });
  }
  delete(path) {
    return this.request("DELETE", path);
  }

  /** Every page of a list, up to `max` items. */
  async all(path, query = {}, max = 1000) {
    const out = [];
    let iterator;
    for (;;) {
      const page = await this.get(path, { ...query, limit: 250, iterator });
      out.push(...page.data);
      if (page.done || !page.iterator || out.length >= max) return out;
      iterator = page.iterator;
    }
  }

  /** The server's Prometheus text (public, like Svix's health). */
  async metrics() {
    const resp = await fetch("/metrics", { cache: "no-store", credentials: "omit" });
    if (!resp.ok) throw new ApiError(resp.status, "metrics", await resp.text());
    return resp.text();
  }
}

/** `/app/{app}` with the id escaped, for the per-application routes. */
export function appPath(appId, rest = "") {
  return `/app/${encodeURIComponent(appId)}${rest}`;
}
