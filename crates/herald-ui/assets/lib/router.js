// The page's routes live in the url's fragment (`#/app/app_1/endpoints`), so
// a reload or a bookmark keeps the screen and no server route is needed.
// Editing the fragment by hand is allowed: every screen loads its data from
// the API with the page's token, so another application's id in the url
// gets the API's 403, never its data.

/** The route in the fragment: its path segments and its query. */
export function current() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query) };
}

/** A fragment for these segments and query parameters. */
export function href(parts, query) {
  const path = parts.map((p) => encodeURIComponent(p)).join("/");
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const q = params.toString();
  return `#/${path}${q ? `?${q}` : ""}`;
}

export function go(parts, query) {
  const next = href(parts, query);
  if (window.location.hash === next) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else window.location.hash = next;
}

/** Sets the fragment without adding a history entry or re-rendering. */
export function replace(parts, query) {
  history.replaceState(null, "", window.location.pathname + window.location.search + href(parts, query));
}

export function onChange(render) {
  window.addEventListener("hashchange", render);
}
