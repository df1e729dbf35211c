// Reading `GET /metrics` (Prometheus text format 0.0.4) in the page. A
// series the server does not report reads as undefined, never 0: "not
// reported" and "zero" are different answers.

/** Label pairs of `{a="x",b="y"}`, with the format's escapes undone. */
function parseLabels(text) {
  const labels = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq < 0) break;
    const name = text.slice(i, eq).trim().replace(/^,/, "").trim();
    let j = eq + 1;
    if (text[j] !== '"') break;
    j += 1;
    let value = "";
    while (j < text.length && text[j] !== '"') {
      if (text[j] === "\\" && j + 1 < text.length) {
        const next = text[j + 1];
        value += next === "n" ? "\n" : next;
        j += 2;
      } else {
        value += text[j];
        j += 1;
      }
    }
    labels[name] = value;
    i = j + 1;
    while (text[i] === "," || text[i] === " ") i += 1;
  }
  return labels;
}

/** name → [{ labels, value }] for every sample in the text. */
export function parse(text) {
  const series = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    let name;
    let labels = {};
    let rest;
    const brace = line.indexOf("{");
    const space = line.indexOf(" ");
    if (brace >= 0 && (space < 0 || brace < space)) {
      const close = line.lastIndexOf("}");
      if (close < brace) continue;
      name = line.slice(0, brace);
      labels = parseLabels(line.slice(brace + 1, close));
      rest = line.slice(close + 1).trim();
    } else {
      if (space < 0) continue;
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const value = Number(rest.split(/\s+/)[0]);
    if (Number.isNaN(value) && !/^NaN$/.test(rest)) continue;
    if (!series.has(name)) series.set(name, []);
    series.get(name).push({ labels, value });
  }
  return series;
}

/**
 * The sum of the samples of `name` whose labels include `labels`, or
 * undefined when there is none.
 */
export function value(series, name, labels = {}) {
  const samples = (series.get(name) || []).filter((s) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (samples.length === 0) return undefined;
  return samples.reduce((sum, s) => sum + s.value, 0);
}

/**
 * A counter's increase per second between two scrapes `seconds` apart;
 * undefined when either lacks it. A counter that went down (the server
 * restarted) counts from zero.
 */
export function rate(before, after, seconds, name, labels = {}) {
  const a = value(before, name, labels);
  const b = value(after, name, labels);
  if (a === undefined || b === undefined || !(seconds > 0)) return undefined;
  const increase = b >= a ? b - a : b;
  return increase / seconds;
}
