// Hand-drawn SVG charts for the campaign results page: stacked bars per touchpoint and
// stacked columns of outcomes over time. Sizes are in viewBox units; CSS scales them.
// Both take the same outcome keys as the KPI cards, so the three always agree.

import { h, s } from "./dom.js";
import { formatNumber, t } from "./i18n.js";
import { formatTime, formatZoned } from "./time.js";

/** Colours per outcome (the legend swatches in app.css use the same). */
const COLOR = {
  succeeded: "#12b76a",
  failed: "#f04438",
  fell_back: "#7a5af8",
  pending: "#fdb022",
  suppressed: "#98a2b3",
};

function legend(segments) {
  return h("div", { class: "legend" }, segments.map((seg) => h("span", { "data-key": seg.key }, h("i", { class: `sw-${seg.key}` }), seg.label)));
}

/**
 * rows: [{label, values: {key: n}, extra}] → horizontal stacked bars, one segment per
 * entry of `segments` ([{key, label}]), the total (and `extra`, e.g. a success rate)
 * after each bar.
 */
export function barChart(rows, segments) {
  const width = 480;
  const labelW = 120;
  const barH = 22;
  const gap = 14;
  const height = rows.length * (barH + gap) + 8;
  const total = (r) => segments.reduce((a, seg) => a + (r.values[seg.key] || 0), 0);
  const max = Math.max(1, ...rows.map(total));
  const scale = (width - labelW - 110) / max;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": segments.map((seg) => seg.label).join(", ") });
  rows.forEach((r, i) => {
    const y = 4 + i * (barH + gap);
    const name = r.label.length > 14 ? `${r.label.slice(0, 13)}…` : r.label;
    svg.appendChild(s("text", { x: 0, y: y + barH / 2 + 4 }, s("title", {}, r.label), name));
    let x = labelW;
    for (const seg of segments) {
      const v = r.values[seg.key] || 0;
      if (!v) continue;
      const w = Math.max(2, v * scale);
      svg.appendChild(s("rect", { x, y, width: w, height: barH, rx: 3, fill: COLOR[seg.key], "data-key": seg.key }, s("title", {}, t("campaign.stat.reason_count", { reason: seg.label, n: formatNumber(v) }))));
      x += w;
    }
    svg.appendChild(s("text", { x: x + 6, y: y + barH / 2 + 4 }, r.extra ? `${formatNumber(total(r))} · ${r.extra}` : formatNumber(total(r))));
  });
  return h("div", {}, svg, legend(segments));
}

/** A round axis step (1, 2 or 5 × 10^k, at least 1) near `raw`. */
function niceStep(raw) {
  if (raw <= 1) return 1;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / pow;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * pow;
}

const NAMED = { minute: 60, hour: 3600, day: 86400, week: 7 * 86400 };

/** A series' bucket length in ms: its `interval` (seconds, or minute/hour/day/…). */
function intervalMs(series) {
  const iv = series.interval;
  if (typeof iv === "number" && iv > 0) return iv * 1000;
  if (typeof iv === "string") {
    const m = iv.match(/^(\d+)?\s*([a-z]+?)s?$/i);
    if (m && NAMED[m[2].toLowerCase()]) return (Number(m[1]) || 1) * NAMED[m[2].toLowerCase()] * 1000;
    if (/^\d+$/.test(iv)) return Number(iv) * 1000;
  }
  const times = series.points.map((p) => new Date(p.at).getTime()).sort((a, b) => a - b);
  let step = Infinity;
  for (let i = 1; i < times.length; i++) if (times[i] > times[i - 1]) step = Math.min(step, times[i] - times[i - 1]);
  return Number.isFinite(step) ? step : 60e3;
}

/**
 * series: {interval, points: [{at, <key>: n}]} (the stats API's `series`) → a column per
 * bucket, stacked in `segments` order from the bottom; empty buckets are drawn empty,
 * at least 12 columns so one busy minute is not one wide slab. Times in the project's zone.
 */
export function timeChart(series, segments) {
  const step = intervalMs(series);
  const byTime = new Map();
  for (const p of series.points) {
    const at = new Date(p.at).getTime();
    if (!Number.isNaN(at)) byTime.set(at, p);
  }
  const times = [...byTime.keys()].sort((a, b) => a - b);
  const first = times[0];
  const used = Math.floor((times[times.length - 1] - first) / step) + 1;
  const count = Math.min(400, Math.max(12, used));
  const start = first - Math.max(0, count - used) * step;
  const buckets = Array.from({ length: count }, (_, i) => byTime.get(start + i * step) || {});
  const width = 640;
  const height = 220;
  const left = 44;
  const bottom = 28;
  const plotH = height - bottom - 10;
  const sum = (b) => segments.reduce((a, seg) => a + (b[seg.key] || 0), 0);
  const peak = Math.max(1, ...buckets.map(sum));
  const tickStep = niceStep(peak / 4);
  const ticks = Math.ceil(peak / tickStep);
  const max = ticks * tickStep;
  const colW = (width - left - 8) / count;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": segments.map((seg) => seg.label).join(", ") });
  for (let i = 0; i <= ticks; i++) {
    const y = 10 + plotH - (plotH * i) / ticks;
    svg.appendChild(s("line", { x1: left, x2: width - 8, y1: y, y2: y, stroke: "#eaecf0", "stroke-width": 1 }));
    svg.appendChild(s("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, formatNumber(i * tickStep)));
  }
  const axis = step >= 86400e3 ? { month: "short", day: "numeric" } : { hour: "2-digit", minute: "2-digit" };
  const every = Math.ceil(count / 8);
  buckets.forEach((b, i) => {
    const x = left + i * colW + colW * 0.15;
    const w = Math.max(1, colW * 0.7);
    const when = formatZoned(start + i * step);
    let base = 10 + plotH;
    for (const seg of segments) {
      const v = b[seg.key] || 0;
      if (!v) continue;
      const hgt = (v / max) * plotH;
      base -= hgt;
      svg.appendChild(s("rect", { x, y: base, width: w, height: hgt, fill: COLOR[seg.key], "data-key": seg.key }, s("title", {}, `${when} · ${t("campaign.stat.reason_count", { reason: seg.label, n: formatNumber(v) })}`)));
    }
    if (i % every === 0) svg.appendChild(s("text", { x: x + w / 2, y: height - 8, "text-anchor": "middle" }, formatTime(start + i * step, axis)));
  });
  return h("div", {}, svg, legend(segments));
}
