// A campaign's page: what it will do (the approver's summary), the actions its state
// allows, and its results — KPI cards, outcomes over time, per touchpoint and per
// step, and the per-user results with a CSV export. While the campaign is running the
// page refreshes itself until its run settles.

import { ApiError, api, download, listAll } from "./api.js";
import { stepNames, summaryCard, touchpointLabel, triggerSummary } from "./campaign_summary.js";
import { actionButtons, audienceSize, lastErrorText, nextRun, statusBadge } from "./campaigns.js";
import { barChart, timeChart } from "./chart.js";
import { add, badge, breadcrumb, busy, codeBlock, h, modal, onTypingPause, replace, spinner, toast } from "./dom.js";
import { errorBox, errorHeading } from "./errors.js";
import { formatNumber, lang, t, tMaybe } from "./i18n.js";
import { formatZoned, projectZone } from "./time.js";

const OUTCOMES = ["TOU_SUCC", "TOU_FAIL", "pending", "suppressed"];
const OUTCOME_KIND = { TOU_SUCC: "ok", TOU_FAIL: "error", pending: "warn", suppressed: "muted" };
const PAGE = 20;
// How often a campaign whose run is not settled is read again: a running one every
// few seconds, one waiting for its start now and then (to see it start).
const REFRESH_MS = { running: 3000, not_started: 30000 };
const SETTLING_MS = 3000;
// Until the stats API has `series` (older servers), the chart is built from events.
const EVENT_CAP = 20000;

function percent(ratio) {
  return ratio === null || ratio === undefined || Number.isNaN(ratio) ? "—" : new Intl.NumberFormat(lang(), { style: "percent", maximumFractionDigits: 1 }).format(ratio);
}

/** Succeeded ÷ sent (the stats' own `success_rate` when it has one). */
function successRate(stats) {
  if (typeof stats.success_rate === "number") return stats.success_rate;
  return stats.sent ? stats.succeeded / stats.sent : null;
}

/** Whether the page must keep reading: the campaign can still send, or results are pending. */
function settled(campaign, stats) {
  return !(campaign.status in REFRESH_MS) && !stats.pending && !stats.held;
}

/** When to read again, or null once the run has settled. */
function refreshDelay(campaign, stats) {
  if (settled(campaign, stats)) return null;
  return REFRESH_MS[campaign.status] || SETTLING_MS;
}

export async function renderCampaignPage(ctx, cid) {
  const { view, pid, sid, base } = ctx;
  const [first, touchpointList, attributes] = await Promise.all([
    api.get(`${base}/${cid}`),
    listAll(`/projects/${pid}/touchpoints`).catch(() => []),
    listAll(`/projects/${pid}/attributes`).catch(() => []),
  ]);
  if (!ctx.isCurrent()) return;
  const touchpoints = new Map(touchpointList.map((tp) => [tp.id, tp]));
  const catalogue = new Map(attributes.map((a) => [a.key, a]));
  const page = { campaign: first, stats: null, timer: null };

  const head = h("div", { class: "page-head" });
  const alerts = h("div");
  const summarySlot = h("div");
  const kpis = h("div", { class: "stats", "data-testid": "kpis" });
  const fallbackNote = h("div");
  const timeSlot = h("div", {}, spinner());
  const tpSlot = h("div", {}, spinner());
  const stepSlot = h("div");
  const deliveries = deliveriesCard(ctx, cid, page, touchpoints);

  replace(
    view,
    breadcrumb([{ label: t("campaign.title"), href: `#/p/${pid}/s/${sid}/campaigns` }, { label: ctx.space.name, href: `#/p/${pid}/s/${sid}/campaigns` }, { label: first.name }], { label: t("campaign.breadcrumb") }),
    head,
    alerts,
    summarySlot,
    h("h2", { class: "section-title" }, t("campaign.results")),
    kpis,
    fallbackNote,
    h(
      "div",
      { class: "charts" },
      h("div", { class: "card chart-card", "data-testid": "chart-time" }, h("h3", {}, t("campaign.chart.over_time")), timeSlot),
      h("div", { class: "card chart-card", "data-testid": "chart-touchpoints" }, h("h3", {}, t("campaign.chart.by_touchpoint")), tpSlot),
    ),
    stepSlot,
    deliveries.el,
  );

  // The audience size needs a preview request: once per page, not on every refresh.
  const sizeText = h("span", {}, t("common.loading"));
  audienceSize(ctx, first).then((n) => {
    sizeText.textContent = n === null ? t("campaign.summary.size_unknown") : t("campaign.summary.size", { n: formatNumber(n) });
  });
  let summaryOf = null;

  const render = () => {
    const { campaign, stats } = page;
    const next = nextRun(campaign);
    replace(
      head,
      h(
        "div",
        {},
        h("h1", { "data-testid": "campaign-name" }, campaign.name, " ", statusBadge(campaign.status)),
        h(
          "p",
          { class: "muted" },
          h("span", { "data-testid": "campaign-trigger" }, triggerSummary(campaign.trigger)),
          next ? h("span", { "data-testid": "campaign-next-run" }, t("campaign.next_run_line", { at: formatZoned(next) })) : null,
        ),
        // Sending now (or settling its last results): say the numbers move by themselves.
        refreshDelay(campaign, stats) !== null && campaign.status !== "not_started" ? h("span", { class: "live", "data-testid": "live" }, t("campaign.live")) : null,
      ),
      h("div", { class: "row-actions wrap" }, previewButton(ctx, campaign), actionButtons(ctx, campaign, refresh)),
    );
    replace(
      alerts,
      campaign.rejection_reason && campaign.status === "rejected" ? h("div", { class: "alert alert-warn" }, h("div", { class: "alert-title" }, t("campaign.rejected_because")), campaign.rejection_reason) : null,
      campaign.last_error ? h("div", { class: "alert alert-error", title: campaign.last_error, "data-testid": "campaign-last-error" }, h("div", { class: "alert-title" }, t("campaign.last_error")), h("span", {}, lastErrorText(campaign))) : null,
    );
    // The summary changes only when the campaign's content does.
    if (summaryOf !== campaign.updated_at) {
      summaryOf = campaign.updated_at;
      replace(summarySlot, summaryCard(campaign, { catalogue, touchpoints, spaceId: ctx.sid, audienceSize: sizeText, byStep: stats.by_step }));
    }
    renderKpis(kpis, stats);
    renderFallbackNote(fallbackNote, stats);
    renderTouchpointChart(tpSlot, stats, touchpoints);
    renderSteps(stepSlot, campaign, stats);
    if (stats.series) renderSeries(timeSlot, stats.series);
    else loadTimeline(ctx, campaign, timeSlot);
  };

  async function refresh() {
    clearTimeout(page.timer);
    const [campaign, stats] = await Promise.all([api.get(`${base}/${cid}`), api.get(`${base}/${cid}/stats`)]);
    if (!ctx.isCurrent()) return;
    page.campaign = campaign;
    page.stats = stats;
    render();
    await deliveries.load();
    const delay = refreshDelay(campaign, stats);
    if (delay !== null) page.timer = setTimeout(() => ctx.isCurrent() && refresh().catch(showRefreshError), delay);
  }
  const showRefreshError = (err) => {
    if (!ctx.isCurrent()) return;
    replace(alerts, errorBox(err));
    page.timer = setTimeout(() => ctx.isCurrent() && refresh().catch(showRefreshError), SETTLING_MS * 3);
  };
  await refresh();
}

function renderKpis(slot, stats) {
  const card = (key, value, sub, kind) =>
    h(
      "div",
      { class: `stat ${kind ? `stat-${kind}` : ""}`, "data-testid": `stat-${key}` },
      h("div", { class: "stat-label" }, t(`campaign.stat.${key}`)),
      h("div", { class: "stat-value" }, value),
      sub ? h("div", { class: "stat-sub" }, sub) : null,
    );
  const suppressed = Object.entries(stats.suppressed_by_reason || {}).filter(([, n]) => n);
  replace(
    slot,
    card("targeted", formatNumber(stats.targeted)),
    card("entered", formatNumber(stats.entered), stats.control ? t("campaign.stat.control_sub", { n: formatNumber(stats.control) }) : null),
    card("sent", formatNumber(stats.sent)),
    card("succeeded", formatNumber(stats.succeeded), h("span", { "data-testid": "success-rate" }, t("campaign.stat.rate_sub", { rate: percent(successRate(stats)) })), "ok"),
    typeof stats.recovered_by_fallback === "number"
      ? card("recovered", formatNumber(stats.recovered_by_fallback), t("campaign.stat.recovered_sub"), "fallback")
      : null,
    card("failed", formatNumber(stats.failed), t("campaign.stat.failed_sub"), stats.failed ? "error" : null),
    card("pending", formatNumber(stats.pending), stats.held ? t("campaign.stat.held_sub", { n: formatNumber(stats.held) }) : null),
    card(
      "suppressed",
      formatNumber(stats.suppressed),
      suppressed.length ? suppressed.map(([reason, n]) => t("campaign.stat.reason_count", { reason: reasonLabel(reason), n: formatNumber(n) })).join(t("campaign.summary.list_sep")) : null,
    ),
  );
}

function reasonLabel(reason) {
  return tMaybe(`campaign.reason.${reason}`) || reason;
}

/** Failures on a touchpoint that the next touchpoint made good, said in words. */
function renderFallbackNote(slot, stats) {
  const perTouchpoint = Object.values(stats.by_touchpoint || {}).reduce((a, s) => a + (s.failed || 0), 0);
  let text = null;
  if (typeof stats.recovered_by_fallback === "number") {
    if (stats.recovered_by_fallback) text = t("campaign.fallback_note", { n: formatNumber(stats.recovered_by_fallback) });
  } else if (perTouchpoint > stats.failed) {
    // Older servers do not count fallbacks: explain why the bars show more failures.
    text = t("campaign.fallback_note_generic");
  }
  replace(slot, text ? h("div", { class: "alert alert-info small", "data-testid": "fallback-note" }, text) : null);
}

/** A touchpoint's name in results: the stats' stored name (kept after deletion). */
function tpName(id, stored, touchpoints) {
  const live = touchpoints.get(Number(id));
  return touchpointLabel(id, { name: (stored && stored.name) || (live && live.name), deleted: stored ? stored.deleted : !live });
}

function renderTouchpointChart(slot, stats, touchpoints) {
  const entries = Object.entries(stats.by_touchpoint || {});
  const fellBack = entries.some(([, s]) => typeof s.fell_back === "number" && s.fell_back > 0);
  const segments = [
    { key: "succeeded", label: t("status.TOU_SUCC") },
    { key: "failed", label: fellBack ? t("campaign.chart.failed_final") : t("campaign.chart.failed_here") },
    fellBack ? { key: "fell_back", label: t("campaign.chart.fell_back") } : null,
    { key: "pending", label: t("status.pending") },
  ].filter(Boolean);
  const rows = entries.map(([id, s]) => {
    const sentHere = (s.succeeded || 0) + (s.failed || 0);
    return {
      label: tpName(id, s, touchpoints),
      values: { succeeded: s.succeeded, failed: (s.failed || 0) - (s.fell_back || 0), fell_back: s.fell_back || 0, pending: s.pending },
      extra: sentHere ? percent(s.succeeded / sentHere) : null,
    };
  });
  const failures = Object.entries(stats.failed_by_reason || {}).sort((a, b) => b[1] - a[1]);
  replace(
    slot,
    rows.length ? barChart(rows, segments) : h("p", { class: "muted small" }, t("campaign.chart.empty")),
    failures.length
      ? h(
          "div",
          { class: "small" },
          h("div", { class: "strong" }, t("campaign.failed_by_reason")),
          h("ul", { class: "link-list" }, failures.slice(0, 8).map(([reason, n]) => h("li", {}, t("campaign.stat.reason_count", { reason: reason || "—", n: formatNumber(n) })))),
        )
      : null,
  );
}

/** Per step: its name (never the internal id alone) and its counts. */
function renderSteps(slot, campaign, stats) {
  const byStep = stats.by_step || {};
  const ids = Object.keys(byStep);
  if (ids.length < 2) {
    replace(slot);
    return;
  }
  const names = stepNames(campaign.strategy, byStep);
  const cols = ["entered", "sent", "succeeded", "failed", "pending", "control"];
  replace(
    slot,
    h(
      "div",
      { class: "card table-card steps-card", "data-testid": "by-step" },
      h("h3", { class: "card-pad" }, t("campaign.by_step")),
      h(
        "table",
        { class: "table table-compact" },
        h("thead", {}, h("tr", {}, h("th", {}, t("campaign.delivery.step")), cols.map((c) => h("th", { class: "num" }, t(`campaign.stat.${c}`))), h("th", { class: "num" }, t("campaign.stat.rate")))),
        h(
          "tbody",
          {},
          ids.map((id) => {
            const s = byStep[id];
            return h(
              "tr",
              { "data-step": id },
              h("td", { title: id }, names.get(id) || id),
              cols.map((c) => h("td", { class: "num" }, formatNumber(s[c] || 0))),
              h("td", { class: "num" }, percent(s.sent ? s.succeeded / s.sent : null)),
            );
          }),
        ),
      ),
    ),
  );
}

/** `perAttempt`: the events count every attempt, so a failure may have been made good. */
function renderSeries(slot, series, { perAttempt = false } = {}) {
  const points = (series && series.points) || [];
  const any = points.some((p) => p.succeeded || p.failed || p.suppressed);
  const segments = [
    { key: "succeeded", label: t("status.TOU_SUCC") },
    { key: "failed", label: perAttempt ? t("campaign.chart.failed_here") : t("status.TOU_FAIL") },
    { key: "suppressed", label: t("status.suppressed") },
  ];
  replace(slot, any ? timeChart(series, segments) : h("p", { class: "muted small" }, t("campaign.chart.empty")), any ? h("p", { class: "muted small" }, t("campaign.chart.zone", { tz: projectZone() })) : null);
}

/** Older servers: outcomes over time from the `$ma_channel_touch` events, in minutes. */
async function loadTimeline(ctx, campaign, slot) {
  const since = campaign.published_at || campaign.created_at;
  const buckets = new Map();
  let capped = false;
  try {
    for (let offset = 0; ; offset += 1000) {
      const page = await api.get(`/projects/${ctx.pid}/events`, { name: "$ma_channel_touch", since, limit: 1000, offset });
      for (const ev of page.items) {
        const p = ev.properties || {};
        if (Number(p.campaign_id) !== campaign.id) continue;
        const at = Math.floor(new Date(ev.time).getTime() / 60e3) * 60e3;
        const b = buckets.get(at) || { at: new Date(at).toISOString(), succeeded: 0, failed: 0 };
        if (p.status === "TOU_SUCC") b.succeeded += 1;
        else b.failed += 1;
        buckets.set(at, b);
      }
      if (page.items.length < 1000) break;
      if (offset + 1000 >= EVENT_CAP) {
        capped = true;
        break;
      }
    }
  } catch (err) {
    replace(slot, errorBox(err));
    return;
  }
  if (!ctx.isCurrent()) return;
  renderSeries(slot, { interval: "minute", points: [...buckets.values()] }, { perAttempt: true });
  if (capped) slot.appendChild(h("p", { class: "muted small" }, t("campaign.chart.capped", { n: formatNumber(EVENT_CAP) })));
}

/** The dry run: the exact bodies the first users would get, nothing sent. */
function previewButton(ctx, campaign) {
  const b = h("button", { class: "btn btn-ghost", type: "button", "data-testid": "campaign-preview" }, t("campaign.preview"));
  b.addEventListener(
    "click",
    busy(b, async () => {
      const m = modal({ title: t("campaign.preview_title", { name: campaign.name }), size: "lg", testid: "preview-dialog" });
      add(m.body, spinner());
      add(m.footer, h("button", { class: "btn btn-primary", type: "button", onClick: () => m.close() }, t("common.close")));
      try {
        const out = await api.post(`${ctx.base}/${campaign.id}/preview`, { sample: 5 });
        const requests = out.requests || [];
        const names = stepNames(campaign.strategy);
        replace(
          m.body,
          h("p", { class: "muted" }, t("campaign.preview_text", { n: (out.gids || []).length })),
          typeof out.audience_size === "number" ? h("p", { "data-testid": "preview-audience" }, t("campaign.summary.size", { n: formatNumber(out.audience_size) })) : null,
          requests.length
            ? requests.map((r) =>
                h(
                  "details",
                  { class: "exchange", open: true, "data-testid": "preview-request" },
                  h("summary", {}, `${r.touchpoint_name || t("campaign.touchpoint_unknown", { id: r.touchpoint_id })} · ${names.get(String(r.step_id)) || r.step_id}`, r.url ? h("code", { class: "small muted" }, ` POST ${r.url}`) : null),
                  codeBlock(r.body),
                ),
              )
            : h("p", { class: "muted" }, t("campaign.preview_empty")),
        );
      } catch (err) {
        replace(m.body, errorBox(err));
      }
    }),
  );
  return b;
}

/** The per-user results: filters, a page of rows, and the CSV export of every match. */
function deliveriesCard(ctx, cid, page, touchpoints) {
  const state = { status: "", gid: "", offset: 0 };
  const body = h("div", {}, spinner());
  const statusSel = h(
    "select",
    { "aria-label": t("campaign.col.status"), "data-testid": "deliveries-status" },
    h("option", { value: "" }, t("campaign.all_outcomes")),
    OUTCOMES.map((s) => h("option", { value: s }, t(`status.${s}`))),
  );
  const gidInput = h("input", { type: "number", min: 1, placeholder: "gid", "aria-label": "gid", "data-testid": "deliveries-gid" });
  const exportBtn = h("button", { class: "btn btn-sm", type: "button", "data-testid": "deliveries-export", title: t("campaign.export_hint") }, t("campaign.export_csv"));
  exportBtn.addEventListener(
    "click",
    busy(exportBtn, async () => {
      try {
        await download(`${ctx.base}/${cid}/deliveries.csv`, { status: state.status }, `campaign-${cid}-deliveries.csv`);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        toast(t("campaign.export_failed", { why: errorHeading(err) }), "error");
      }
    }),
  );
  const load = async () => {
    try {
      const data = await api.get(`${ctx.base}/${cid}/deliveries`, { status: state.status, gid: state.gid, limit: PAGE, offset: state.offset });
      const names = stepNames(page.campaign.strategy, (page.stats && page.stats.by_step) || {});
      const byTp = (page.stats && page.stats.by_touchpoint) || {};
      const tpCell = (d) => {
        if (!d.touchpoint_id) return "—";
        const stored = d.touchpoint_name ? { name: d.touchpoint_name, deleted: Boolean(d.touchpoint_deleted) } : byTp[String(d.touchpoint_id)];
        return tpName(d.touchpoint_id, stored, touchpoints);
      };
      replace(
        body,
        data.items.length
          ? h(
              "div",
              { class: "table-scroll" },
              h(
                "table",
                { class: "table table-compact", "data-testid": "deliveries-table" },
                h("thead", {}, h("tr", {}, ["gid", "status", "touchpoint", "step", "attempts", "message", "order"].map((c) => h("th", {}, t(`campaign.delivery.${c}`))))),
                h(
                  "tbody",
                  {},
                  data.items.map((d) =>
                    h(
                      "tr",
                      { "data-testid": "delivery-row" },
                      h("td", {}, String(d.gid)),
                      h("td", {}, badge(t(`status.${d.status}`), OUTCOME_KIND[d.status] || "neutral")),
                      h("td", { "data-testid": "delivery-touchpoint" }, tpCell(d)),
                      h("td", { class: "small", title: d.step_id || null }, d.step_name || names.get(String(d.step_id)) || d.step_id || "—"),
                      h("td", {}, String(d.attempts ?? 0)),
                      d.reason && d.status === "suppressed" ? h("td", { class: "small msg" }, reasonLabel(d.reason)) : h("td", { class: "small msg", lang: "en" }, d.error_msg || ""),
                      h("td", {}, d.order_no ? h("code", { class: "small" }, d.order_no) : ""),
                    ),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted small card-pad" }, t("campaign.no_deliveries")),
        h(
          "div",
          { class: "pager" },
          h("span", { class: "muted small" }, t("campaign.page_info", { from: data.total ? state.offset + 1 : 0, to: state.offset + data.items.length, total: formatNumber(data.total) })),
          h("button", { class: "btn btn-sm", type: "button", disabled: state.offset === 0, onClick: () => { state.offset = Math.max(0, state.offset - PAGE); load(); } }, t("campaign.prev")),
          h("button", { class: "btn btn-sm", type: "button", disabled: state.offset + PAGE >= data.total, onClick: () => { state.offset += PAGE; load(); } }, t("campaign.next")),
        ),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  };
  statusSel.addEventListener("change", () => {
    state.status = statusSel.value;
    state.offset = 0;
    load();
  });
  onTypingPause(gidInput, () => {
    state.gid = gidInput.value.trim();
    state.offset = 0;
    load();
  });
  const el = h("div", { class: "card", "data-testid": "deliveries" }, h("div", { class: "card-pad toolbar" }, h("h3", { class: "spacer" }, t("campaign.deliveries")), statusSel, gidInput, exportBtn), body);
  return { el, load };
}

