// Hand-drawn SVG charts for the campaign results page: stacked bars per touchpoint and
// stacked columns of outcomes over time. Sizes are in viewBox units; CSS scales them.

import { h, s } from "./dom.js";
import { formatNumber, lang } from "./i18n.js";

const COLORS = ["#12b76a", "#f04438", "#fdb022", "#98a2b3"];
const SWATCH = ["sw-succ", "sw-fail", "sw-pend", "sw-supp"];

function legend(labels) {
  return h("div", { class: "legend" }, labels.map((label, i) => h("span", {}, h("i", { class: SWATCH[i] }), label)));
}

/** rows: [{label, values: [succeeded, failed, pending]}] → horizontal stacked bars. */
export function barChart(rows, labels) {
  const width = 480;
  const labelW = 120;
  const barH = 22;
  const gap = 14;
  const height = rows.length * (barH + gap) + 8;
  const max = Math.max(1, ...rows.map((r) => r.values.reduce((a, b) => a + b, 0)));
  const scale = (width - labelW - 60) / max;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": labels.join(", ") });
  rows.forEach((r, i) => {
    const y = 4 + i * (barH + gap);
    const name = r.label.length > 14 ? `${r.label.slice(0, 13)}…` : r.label;
    svg.appendChild(s("text", { x: 0, y: y + barH / 2 + 4 }, name));
    let x = labelW;
    r.values.forEach((v, k) => {
      if (!v) return;
      const w = Math.max(2, v * scale);
      svg.appendChild(s("rect", { x, y, width: w, height: barH, rx: 3, fill: COLORS[k] }, s("title", {}, `${labels[k]}: ${formatNumber(v)}`)));
      x += w;
    });
    const total = r.values.reduce((a, b) => a + b, 0);
    svg.appendChild(s("text", { x: x + 6, y: y + barH / 2 + 4 }, formatNumber(total)));
  });
  return h("div", {}, svg, legend(labels));
}

/** A round axis step (1, 2 or 5 × 10^k, at least 1) near `raw`. */
function niceStep(raw) {
  if (raw <= 1) return 1;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / pow;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * pow;
}

const STEPS = [
  60e3, 5 * 60e3, 15 * 60e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 24 * 3600e3, 7 * 24 * 3600e3,
];

/** points: [{time, status}] → columns per time bucket, reached (green) under failed (red). */
export function timeChart(points, labels) {
  const times = points.map((p) => new Date(p.time).getTime()).filter((n) => !Number.isNaN(n));
  const first = Math.min(...times);
  const last = Math.max(...times);
  // The smallest bucket that keeps the chart at or under 40 columns.
  const step = STEPS.find((st) => (last - first) / st <= 40) || STEPS[STEPS.length - 1];
  // At least 12 columns, padded before the first result, so one busy minute is not one wide slab.
  const used = Math.floor((last - Math.floor(first / step) * step) / step) + 1;
  const count = Math.max(12, used);
  const start = Math.floor(first / step) * step - (count - used) * step;
  const buckets = Array.from({ length: count }, () => [0, 0]);
  for (const p of points) {
    const at = new Date(p.time).getTime();
    if (Number.isNaN(at)) continue;
    const b = buckets[Math.floor((at - start) / step)];
    if (p.status === "TOU_SUCC") b[0] += 1;
    else b[1] += 1;
  }
  const width = 640;
  const height = 220;
  const left = 44;
  const bottom = 28;
  const plotH = height - bottom - 10;
  const peak = Math.max(1, ...buckets.map((b) => b[0] + b[1]));
  const tickStep = niceStep(peak / 4);
  const ticks = Math.ceil(peak / tickStep);
  const max = ticks * tickStep;
  const colW = (width - left - 8) / count;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${labels.succ}, ${labels.fail}` });
  for (let i = 0; i <= ticks; i++) {
    const y = 10 + plotH - (plotH * i) / ticks;
    svg.appendChild(s("line", { x1: left, x2: width - 8, y1: y, y2: y, stroke: "#eaecf0", "stroke-width": 1 }));
    svg.appendChild(s("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, formatNumber(i * tickStep)));
  }
  const fmt = new Intl.DateTimeFormat(lang(), step >= 24 * 3600e3 ? { month: "short", day: "numeric" } : { hour: "2-digit", minute: "2-digit" });
  const full = new Intl.DateTimeFormat(lang(), { dateStyle: "medium", timeStyle: "short" });
  buckets.forEach(([succ, fail], i) => {
    const x = left + i * colW + colW * 0.15;
    const w = Math.max(1, colW * 0.7);
    const hs = (succ / max) * plotH;
    const hf = (fail / max) * plotH;
    const base = 10 + plotH;
    const when = full.format(new Date(start + i * step));
    if (succ) svg.appendChild(s("rect", { x, y: base - hs, width: w, height: hs, fill: COLORS[0] }, s("title", {}, `${when} · ${labels.succ}: ${formatNumber(succ)}`)));
    if (fail) svg.appendChild(s("rect", { x, y: base - hs - hf, width: w, height: hf, fill: COLORS[1] }, s("title", {}, `${when} · ${labels.fail}: ${formatNumber(fail)}`)));
    const every = Math.ceil(count / 8);
    if (i % every === 0) svg.appendChild(s("text", { x: x + w / 2, y: height - 8, "text-anchor": "middle" }, fmt.format(new Date(start + i * step))));
  });
  return h("div", {}, svg, legend([labels.succ, labels.fail]));
}
