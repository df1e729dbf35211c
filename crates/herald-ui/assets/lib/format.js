// How values read on screen.

/** Svix's MessageStatus codes. */
export const STATUS = {
  0: ["Succeeded", "ok"],
  1: ["Pending", "warn"],
  2: ["Failed", "bad"],
  3: ["Sending", "warn"],
};

export function statusLabel(code) {
  return (STATUS[code] || [`status ${code}`, "dim"])[0];
}

export function statusClass(code) {
  return (STATUS[code] || ["", "dim"])[1];
}

/** A time in the reader's zone, to the second. */
export function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { hour12: false });
}

export function duration(ms) {
  if (ms === undefined || ms === null) return "—";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** JSON for reading: indented; text that is not JSON as it is. */
export function pretty(value) {
  if (typeof value !== "string") return JSON.stringify(value, null, 2);
  try {
    return JSON.stringify(JSON.parse(value), null, 2);
  } catch {
    return value;
  }
}

/** A `datetime-local` input's value as RFC 3339 (UTC), or "" when empty. */
export function fromLocalInput(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** An RFC 3339 time as a `datetime-local` input value in the reader's zone. */
export function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function percent(part, whole) {
  if (!whole) return "—";
  return `${((100 * part) / whole).toFixed(part === whole ? 0 : 1)} %`;
}
