// Times as the project sees them: every date and time is shown in the project's time
// zone (GET /projects → `timezone`), whatever zone the browser is in, and says so. A
// campaign scheduled for 10:00 in Asia/Shanghai reads "10:00 (Asia/Shanghai)" in a
// browser set to UTC, as its operators planned it.

import { h } from "./dom.js";
import { lang, t } from "./i18n.js";

let zone = "UTC";
const formats = new Map();

/** The zone of the project being shown (main.js sets it on every route). */
export function setZone(tz) {
  zone = tz || "UTC";
}

export function projectZone() {
  return zone;
}

function format(opts) {
  const key = `${lang()}|${zone}|${JSON.stringify(opts)}`;
  let f = formats.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(lang(), { ...opts, timeZone: zone });
    formats.set(key, f);
  }
  return f;
}

function parse(iso) {
  if (iso === null || iso === undefined || iso === "") return null;
  const d = iso instanceof Date ? iso : new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

const FULL = { dateStyle: "medium", timeStyle: "short" };

/** The date and time in the project's zone, without the zone's name ("" when none). */
export function formatTime(iso, opts = FULL) {
  const d = parse(iso);
  return d ? format(opts).format(d) : iso ? String(iso) : "";
}

/** "{time} (Asia/Shanghai)": a time (or a time of day) labelled with the project's zone. */
export function zoned(text) {
  return t("time.zoned", { time: text, tz: zone });
}

/** The date and time in the project's zone, labelled with it. */
export function formatZoned(iso, opts = FULL) {
  const text = formatTime(iso, opts);
  return text ? zoned(text) : "";
}

/**
 * A <time> element: the date and time in the project's zone (labelled unless `label`
 * is false, for a column whose heading names the zone); the tooltip adds the reader's
 * own zone when it differs.
 */
export function timeEl(iso, { label = true, opts = FULL, testid } = {}) {
  const d = parse(iso);
  if (!d) return h("span", { class: "muted" }, "—");
  const text = label ? formatZoned(d, opts) : formatTime(d, opts);
  const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const title = local && local !== zone ? t("time.local", { time: new Intl.DateTimeFormat(lang(), FULL).format(d), tz: local }) : zoned(formatTime(d));
  return h("time", { datetime: d.toISOString(), title, "data-testid": testid || null }, text);
}
