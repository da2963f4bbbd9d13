// "Check endpoint" (体检): runs the doctor's conformance suite against a touchpoint's
// endpoint and shows the report. Every finding comes with a code and params; the
// sentence and the fix are rendered from doctor.msg.<code> / doctor.fix.<code> in the
// reader's language (the service's English text is only a fallback for unknown codes).

import { ApiError, api } from "./api.js";
import { add, badge, busy, h, modal, replace, spinner } from "./dom.js";
import { errorBox } from "./errors.js";
import { formatNumber, t, tMaybe } from "./i18n.js";

const GROUPS = ["options", "protocol", "idempotency", "security", "timing", "receipts"];
const OUTCOME_KIND = { pass: "ok", warn: "warn", fail: "error", skip: "muted" };

/** Params as the sentence shows them: error kinds in words, numbers formatted. */
function shownParams(params) {
  const out = {};
  for (const [key, value] of Object.entries(params || {})) {
    if (key === "error_kind") out[key] = tMaybe(`doctor.error_kind.${value}`) || value;
    else if (typeof value === "number" && !/gid/.test(key)) out[key] = formatNumber(value);
    else out[key] = value;
  }
  return out;
}

function sentence(prefix, item, english) {
  const text = tMaybe(`doctor.${prefix}.${item.code}`, shownParams(item.params));
  if (text) return h("span", {}, text);
  return english ? h("span", { lang: "en" }, english) : null;
}

function itemRow(item) {
  const fix = item.outcome === "fail" || item.outcome === "warn" ? sentence("fix", item, item.fix) : null;
  return h(
    "tr",
    { "data-testid": "doctor-item", "data-check": item.check, "data-code": item.code, "data-outcome": item.outcome },
    h("td", {}, badge(t(`doctor.outcome.${item.outcome}`), OUTCOME_KIND[item.outcome] || "neutral")),
    h(
      "td",
      {},
      h("code", { class: "small" }, item.check),
      !item.required && item.outcome === "warn" ? h("div", { class: "muted small" }, t("doctor.advice")) : null,
    ),
    h(
      "td",
      {},
      h("div", { "data-testid": "doctor-message" }, sentence("msg", item, item.message)),
      fix ? h("div", { class: "muted small", "data-testid": "doctor-fix" }, h("strong", {}, t("doctor.fix"), " "), fix) : null,
    ),
  );
}

function timingTable(report) {
  if (!report.timing.length) return null;
  const cols = ["batch", "samples", "p50", "p95", "timeouts", "timeout"];
  return h(
    "div",
    { class: "stack" },
    h("h3", {}, t("doctor.timing.title")),
    h(
      "table",
      { class: "table table-compact", "data-testid": "doctor-timing" },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, t(`doctor.timing.${c}`))))),
      h(
        "tbody",
        {},
        report.timing.map((row) =>
          h("tr", {}, [row.batch_size, row.samples, row.p50_ms, row.p95_ms, row.timeouts, row.timeout_ms].map((v) => h("td", {}, formatNumber(v)))),
        ),
      ),
    ),
    report.suggested_in_flight !== null ? h("p", { "data-testid": "doctor-in-flight" }, t("doctor.in_flight", { n: report.suggested_in_flight })) : null,
  );
}

export function renderReport(report) {
  const c = report.counts;
  const groups = GROUPS.filter((g) => report.items.some((i) => i.group === g));
  const syn = report.synthetic;
  return h(
    "div",
    { class: "stack", "data-testid": "doctor-report", "data-ok": report.ok ? "true" : "false" },
    h(
      "div",
      { class: `alert ${report.ok ? "alert-ok" : "alert-error"}`, "data-testid": "doctor-verdict" },
      h("div", { class: "alert-title" }, report.ok ? t("doctor.passed") : t("doctor.failed")),
      h("div", {}, t("doctor.summary", { ...c, seconds: (report.duration_ms / 1000).toFixed(1) })),
    ),
    h(
      "table",
      { class: "table table-compact", "data-testid": "doctor-items" },
      h(
        "tbody",
        {},
        groups.map((g) => [
          h("tr", { class: "group-row" }, h("th", { colspan: 3 }, t(`doctor.group.${g}`))),
          report.items.filter((i) => i.group === g).map(itemRow),
        ]),
      ),
    ),
    timingTable(report),
    h(
      "p",
      { class: "muted small", "data-testid": "doctor-synthetic" },
      t("doctor.synthetic", {
        gid_min: syn.gid_min,
        gid_max: syn.gid_max,
        reserved_min: syn.reserved_gid_min,
        reserved_max: syn.reserved_gid_max,
        marker: syn.marker,
      }),
    ),
  );
}

export function openDoctorDialog(ctx, tp) {
  const path = `/projects/${ctx.pid}/touchpoints/${tp.id}/doctor`;
  const m = modal({ title: t("doctor.title", { name: tp.name }), size: "lg", testid: "doctor-dialog" });
  const result = h("div", { "data-testid": "doctor-result" });
  add(m.body, h("p", { class: "muted" }, t("doctor.intro")), result);
  const run = h("button", { class: "btn btn-primary", type: "button", "data-testid": "doctor-run" }, t("doctor.run"));
  run.addEventListener(
    "click",
    busy(run, async () => {
      replace(result, h("div", { class: "muted", "data-testid": "doctor-running" }, spinner(), " ", t("doctor.running")));
      try {
        replace(result, renderReport(await api.post(path, {})));
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        replace(result, errorBox(err, { testid: "doctor-error" }));
      }
    }),
  );
  add(m.footer, h("button", { class: "btn", type: "button", onClick: () => m.close() }, t("common.close")), run);
}
