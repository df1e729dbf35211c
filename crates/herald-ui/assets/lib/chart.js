// A small bar chart in SVG, drawn with elements and attributes only (the
// CSP allows no inline style): one bar per attempt, its height the
// duration, its class the outcome, oldest on the left.

import { svg } from "./dom.js";

/**
 * `bars` are { value, kind, title }: `kind` is a CSS class (ok, bad), the
 * title is shown on hover and read by screen readers.
 */
export function barChart(bars, { label, width = 600, height = 120 } = {}) {
  const max = Math.max(1, ...bars.map((b) => b.value));
  const gap = 2;
  // Room for 30 bars at least, so a few attempts do not make slabs.
  const n = Math.max(bars.length, 30);
  const barWidth = Math.max(2, (width - gap * (n - 1)) / n);
  const root = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": label,
    testid: "health-chart",
  });
  root.append(svg("title", { text: label }));
  bars.forEach((b, i) => {
    // At least a sliver, so an instant failure still shows.
    const h = Math.max(3, Math.round((b.value / max) * (height - 4)));
    const rect = svg("rect", {
      class: `bar ${b.kind}`,
      x: (i * (barWidth + gap)).toFixed(1),
      y: height - h,
      width: barWidth.toFixed(1),
      height: h,
    });
    rect.append(svg("title", { text: b.title }));
    root.append(rect);
  });
  root.append(svg("line", { class: "axis", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }));
  return root;
}
