// Where the token is kept: the tab's sessionStorage (memory when storage is
// refused, as in some locked-down iframes), never a cookie. The portal's
// token arrives in the url's fragment (`#key=appsk_…`), which browsers do
// not send to any server; it is read once and removed from the address bar
// with history.replaceState, so it is not left in the history, a bookmark or
// a screenshot of the address.

const memory = new Map();

function storage() {
  try {
    const s = window.sessionStorage;
    s.setItem("herald.probe", "1");
    s.removeItem("herald.probe");
    return s;
  } catch {
    return null;
  }
}

export function load(name) {
  const s = storage();
  return s ? s.getItem(name) : memory.get(name) || null;
}

export function save(name, token) {
  const s = storage();
  if (s) s.setItem(name, token);
  else memory.set(name, token);
}

export function forget(name) {
  const s = storage();
  if (s) s.removeItem(name);
  memory.delete(name);
}

/**
 * The token in `#key=…`, if the url has one: kept under `name` (a new one
 * replaces what was kept) and taken out of the address. Returns it, or null.
 */
export function takeFromUrl(name) {
  const hash = window.location.hash;
  if (!hash.startsWith("#key=")) return null;
  const token = decodeURIComponent(hash.slice("#key=".length).split("&")[0]);
  history.replaceState(null, "", window.location.pathname + window.location.search);
  if (!token) return null;
  save(name, token);
  return token;
}
