// Campaigns of a space: the list with the actions each state allows, the editor
// (campaign_form.js) and the results page (stats, charts, per-user deliveries).

import { ApiError, api, listAll } from "./api.js";
import { barChart, timeChart } from "./chart.js";
import { add, badge, busy, codeBlock, confirmDialog, emptyState, h, modal, replace, spinner, toast } from "./dom.js";
import { errorBox, errorHeading } from "./errors.js";
import { formatDateTime, formatNumber, t } from "./i18n.js";

const SPACE_KEY = "touchgate.space";
const STATUS_KIND = {
  draft: "neutral",
  in_approval: "info",
  rejected: "error",
  awaiting_publish: "info",
  not_started: "warn",
  running: "ok",
  paused: "warn",
  finished: "muted",
  closed: "muted",
};
const ACTIONS = ["submit", "approve", "reject", "withdraw", "publish", "pause", "resume", "close", "copy"];
const DANGEROUS = new Set(["close", "reject"]);

export function statusBadge(status) {
  return badge(t(`campaign.status.${status}`), STATUS_KIND[status] || "neutral", { "data-status": status, "data-testid": "campaign-status" });
}

/** parts: what follows /p/{pid}/ in the hash. */
export async function renderCampaigns(ctx, parts) {
  const { pid, view, navigate } = ctx;
  const spaces = await listAll(`/projects/${pid}/spaces`);
  if (!ctx.isCurrent()) return;
  if (parts[0] === "campaign" && parts[1]) {
    await findCampaign(ctx, spaces, Number(parts[1]));
    return;
  }
  if (!spaces.length) {
    replace(view, h("div", { class: "page-head" }, h("h1", {}, t("campaign.title"))), h("div", { class: "card" }, emptyState(t("campaign.no_spaces"), t("campaign.no_spaces_text"))));
    return;
  }
  if (parts[0] !== "s" || !parts[1]) {
    const saved = localStorage.getItem(SPACE_KEY);
    const space = spaces.find((s) => String(s.id) === saved) || spaces[0];
    navigate(`#/p/${pid}/s/${space.id}/campaigns`);
    return;
  }
  const sid = Number(parts[1]);
  const space = spaces.find((s) => s.id === sid);
  if (!space) {
    replace(view, emptyState(t("campaign.unknown_space"), "", h("a", { class: "btn", href: `#/p/${pid}/campaigns` }, t("common.back"))));
    return;
  }
  localStorage.setItem(SPACE_KEY, String(sid));
  const sctx = { ...ctx, sid, space, spaces, base: `/projects/${pid}/spaces/${sid}/campaigns` };
  const rest = parts.slice(3);
  if (rest[0] === "new") {
    const mod = await import("./campaign_form.js");
    await mod.renderCampaignForm(sctx, null);
  } else if (rest[0] && rest[1] === "edit") {
    const campaign = await api.get(`${sctx.base}/${Number(rest[0])}`);
    const mod = await import("./campaign_form.js");
    await mod.renderCampaignForm(sctx, campaign);
  } else if (rest[0]) {
    await renderResults(sctx, Number(rest[0]));
  } else {
    await renderList(sctx);
  }
}

/** A link from elsewhere (a disable refusal) names only the campaign: find its space. */
async function findCampaign(ctx, spaces, cid) {
  for (const space of spaces) {
    try {
      await api.get(`/projects/${ctx.pid}/spaces/${space.id}/campaigns/${cid}`);
      ctx.navigate(`#/p/${ctx.pid}/s/${space.id}/campaigns/${cid}`);
      return;
    } catch (err) {
      if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 403)) throw err;
    }
  }
  replace(ctx.view, emptyState(t("campaign.not_found"), t("campaign.not_found_text", { id: cid }), h("a", { class: "btn", href: `#/p/${ctx.pid}/campaigns` }, t("common.back"))));
}

function spaceTabs(ctx, suffix = "") {
  return h(
    "nav",
    { class: "tabs", "data-testid": "space-tabs" },
    ctx.spaces.map((s) => h("a", { class: s.id === ctx.sid ? "tab active" : "tab", href: `#/p/${ctx.pid}/s/${s.id}/campaigns${suffix}`, "data-testid": `space-tab-${s.name}` }, s.name)),
  );
}

export function triggerSummary(trigger) {
  if (!trigger || !trigger.type) return "";
  if (trigger.type === "once") return trigger.at ? t("campaign.trigger.once_at", { at: formatDateTime(trigger.at) }) : t("campaign.trigger.once_now");
  if (trigger.type === "recurring") {
    const what = trigger.cron ? t("campaign.trigger.cron_summary", { cron: trigger.cron }) : t(`campaign.trigger.every.${trigger.every}`) + (trigger.time ? ` ${trigger.time}` : "");
    return what;
  }
  return t(`campaign.trigger.type.${trigger.type}`);
}

const listFilter = { status: "" };

async function renderList(ctx) {
  const { view, pid, sid } = ctx;
  const slot = h("div", { class: "card table-card" }, spinner());
  const statusSel = h(
    "select",
    {
      "aria-label": t("campaign.col.status"),
      "data-testid": "campaign-filter-status",
      onChange: (e) => {
        listFilter.status = e.target.value;
        reload().catch((err) => replace(slot, errorBox(err)));
      },
    },
    h("option", { value: "" }, t("campaign.all_statuses")),
    Object.keys(STATUS_KIND).map((s) => h("option", { value: s, selected: listFilter.status === s }, t(`campaign.status.${s}`))),
  );
  replace(
    view,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, t("campaign.title")), h("p", { class: "muted" }, t("campaign.subtitle"))),
      h("a", { class: "btn btn-primary", href: `#/p/${pid}/s/${sid}/campaigns/new`, "data-testid": "campaign-new" }, h("span", { class: "plus" }, "+"), t("campaign.new")),
    ),
    spaceTabs(ctx),
    h("div", { class: "toolbar" }, statusSel),
    slot,
  );

  const reload = async () => {
    const items = await listAll(ctx.base, { status: listFilter.status });
    if (!ctx.isCurrent()) return;
    if (!items.length) {
      replace(
        slot,
        emptyState(
          listFilter.status ? t("campaign.none_match") : t("campaign.none_title"),
          listFilter.status ? "" : t("campaign.none_text", { space: ctx.space.name }),
          listFilter.status ? null : h("a", { class: "btn btn-primary", href: `#/p/${pid}/s/${sid}/campaigns/new` }, t("campaign.new")),
        ),
      );
      return;
    }
    replace(
      slot,
      h(
        "table",
        { class: "table", "data-testid": "campaign-table" },
        h("thead", {}, h("tr", {}, ["name", "status", "trigger", "next_run", "updated", "actions"].map((c) => h("th", { class: `col-${c}` }, t(`campaign.col.${c}`))))),
        h(
          "tbody",
          {},
          items.map((c) =>
            h(
              "tr",
              { "data-testid": "campaign-row", "data-id": c.id, "data-name": c.name },
              h("td", {}, h("a", { class: "strong", href: `#/p/${pid}/s/${sid}/campaigns/${c.id}`, "data-testid": "campaign-link" }, c.name), c.last_error ? h("div", { class: "small field-error", lang: "en" }, c.last_error) : null),
              h("td", {}, statusBadge(c.status)),
              h("td", { class: "small" }, triggerSummary(c.trigger)),
              h("td", { class: "small muted" }, c.next_run_at ? formatDateTime(c.next_run_at) : "—"),
              h("td", { class: "small muted" }, formatDateTime(c.updated_at)),
              h("td", { class: "col-actions" }, actionButtons(ctx, c, reload, { compact: true })),
            ),
          ),
        ),
      ),
    );
  };
  await reload();
}

/** The buttons for exactly the actions the campaign's state allows. */
export function actionButtons(ctx, campaign, reload, { compact = false } = {}) {
  const { pid, sid, base, navigate } = ctx;
  const allowed = campaign.allowed_actions || [];
  const buttons = [];
  const mk = (action, label, handler, kind) => {
    const b = h("button", { class: `btn ${compact ? "btn-sm" : ""} ${kind || "btn-ghost"}`, type: "button", "data-testid": `campaign-${action}` }, label);
    b.addEventListener("click", busy(b, handler));
    buttons.push(b);
  };
  if (allowed.includes("edit")) {
    buttons.push(h("a", { class: `btn ${compact ? "btn-sm" : ""} btn-ghost`, href: `#/p/${pid}/s/${sid}/campaigns/${campaign.id}/edit`, "data-testid": "campaign-edit" }, t("campaign.action.edit")));
  }
  for (const action of ACTIONS) {
    if (!allowed.includes(action)) continue;
    mk(action, t(`campaign.action.${action}`), async () => {
      let body = {};
      if (action === "reject") {
        const reason = await askReason();
        if (reason === null) return;
        body = reason ? { reason } : {};
      } else if (DANGEROUS.has(action)) {
        const ok = await confirmDialog(t(`campaign.confirm.${action}`), t(`campaign.confirm.${action}_text`, { name: campaign.name }), { danger: true, okLabel: t(`campaign.action.${action}`) });
        if (!ok) return;
      }
      try {
        const out = await api.post(`${base}/${campaign.id}/${action}`, body);
        toast(t("campaign.done", { action: t(`campaign.action.${action}`), name: out.name }));
        if (action === "copy") {
          navigate(`#/p/${pid}/s/${sid}/campaigns/${out.id}/edit`);
          return;
        }
      } catch (err) {
        showActionError(err);
      }
      await reload();
    }, action === "publish" || action === "submit" || action === "approve" ? "btn-primary" : null);
  }
  if (allowed.includes("delete")) {
    mk("delete", t("campaign.action.delete"), async () => {
      const ok = await confirmDialog(t("campaign.confirm.delete"), t("campaign.confirm.delete_text", { name: campaign.name }), { danger: true, okLabel: t("campaign.action.delete") });
      if (!ok) return;
      try {
        await api.del(`${base}/${campaign.id}`);
        toast(t("campaign.deleted", { name: campaign.name }));
        navigate(`#/p/${pid}/s/${sid}/campaigns`);
      } catch (err) {
        showActionError(err);
      }
      await reload();
    }, "btn-danger-ghost");
  }
  return h("div", { class: "row-actions" }, buttons);
}

function showActionError(err) {
  if (!(err instanceof ApiError)) throw err;
  const m = modal({ title: errorHeading(err), size: "sm", testid: "action-error" });
  m.body.appendChild(errorBox(err));
  m.footer.appendChild(h("button", { class: "btn btn-primary", type: "button", onClick: () => m.close() }, t("common.ok")));
}

function askReason() {
  return new Promise((resolve) => {
    let answer = null;
    const m = modal({ title: t("campaign.reject_title"), size: "sm", testid: "reject-dialog", onClose: () => resolve(answer) });
    const input = h("textarea", { rows: 3, "data-testid": "reject-reason", placeholder: t("campaign.reject_placeholder") });
    add(m.body, h("div", { class: "field" }, h("label", { class: "field-label" }, t("campaign.reject_reason")), input));
    add(m.footer, 
      h("button", { class: "btn", type: "button", onClick: () => m.close() }, t("common.cancel")),
      h("button", { class: "btn btn-danger", type: "button", "data-testid": "reject-ok", onClick: () => { answer = input.value.trim(); m.close(); } }, t("campaign.action.reject")),
    );
  });
}

// ---- results -------------------------------------------------------------------------------

const OUTCOMES = ["TOU_SUCC", "TOU_FAIL", "pending", "suppressed"];
const PAGE = 20;
const EVENT_CAP = 20000;

async function renderResults(ctx, cid) {
  const { view, pid, sid, base } = ctx;
  const [campaign, stats, touchpoints] = await Promise.all([
    api.get(`${base}/${cid}`),
    api.get(`${base}/${cid}/stats`),
    listAll(`/projects/${pid}/touchpoints`).catch(() => []),
  ]);
  if (!ctx.isCurrent()) return;
  const tpName = new Map(touchpoints.map((tp) => [String(tp.id), tp.name]));
  const reload = () => renderResults(ctx, cid);

  const stat = (key, value) => h("div", { class: "stat", "data-testid": `stat-${key}` }, h("div", { class: "stat-label" }, t(`campaign.stat.${key}`)), h("div", { class: "stat-value" }, formatNumber(value)));
  const tpRows = Object.entries(stats.by_touchpoint || {}).map(([id, s]) => ({
    label: tpName.get(id) || `#${id}`,
    values: [s.succeeded, s.failed, s.pending],
  }));
  const timeSlot = h("div", {}, spinner());
  const failures = Object.entries(stats.failed_by_reason || {}).sort((a, b) => b[1] - a[1]);

  replace(
    view,
    h("div", { class: "breadcrumb" }, h("a", { href: `#/p/${pid}/s/${sid}/campaigns` }, t("campaign.title")), "›", ctx.space.name),
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", { "data-testid": "campaign-name" }, campaign.name, " ", statusBadge(campaign.status)), h("p", { class: "muted" }, triggerSummary(campaign.trigger), campaign.next_run_at ? ` · ${t("campaign.col.next_run")}: ${formatDateTime(campaign.next_run_at)}` : "")),
      h("div", { class: "row-actions" }, previewButton(ctx, campaign), actionButtons(ctx, campaign, reload)),
    ),
    campaign.rejection_reason && campaign.status === "rejected" ? h("div", { class: "alert alert-warn" }, h("div", { class: "alert-title" }, t("campaign.rejected_because")), campaign.rejection_reason) : null,
    campaign.last_error ? h("div", { class: "alert alert-error" }, h("div", { class: "alert-title" }, t("campaign.last_error")), h("span", { lang: "en" }, campaign.last_error)) : null,
    h("div", { class: "stats" }, ["targeted", "entered", "sent", "succeeded", "failed", "pending", "suppressed"].map((k) => stat(k, stats[k]))),
    h(
      "div",
      { class: "charts" },
      h("div", { class: "card chart-card", "data-testid": "chart-time" }, h("h3", {}, t("campaign.chart.over_time")), timeSlot),
      h(
        "div",
        { class: "card chart-card", "data-testid": "chart-touchpoints" },
        h("h3", {}, t("campaign.chart.by_touchpoint")),
        tpRows.length ? barChart(tpRows, [t("status.TOU_SUCC"), t("status.TOU_FAIL"), t("status.pending")]) : h("p", { class: "muted small" }, t("campaign.chart.empty")),
        failures.length
          ? h("div", { class: "small" }, h("div", { class: "strong", }, t("campaign.failed_by_reason")), h("ul", { class: "link-list" }, failures.slice(0, 8).map(([reason, n]) => h("li", {}, h("span", { lang: "en" }, reason || "—"), ` · ${formatNumber(n)}`))))
          : null,
      ),
    ),
    deliveriesCard(ctx, cid, tpName),
  );
  loadTimeline(ctx, campaign, timeSlot);
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
        replace(
          m.body,
          h("p", { class: "muted" }, t("campaign.preview_text", { n: (out.gids || []).length })),
          requests.length
            ? requests.map((r) =>
                h(
                  "details",
                  { class: "exchange", open: true, "data-testid": "preview-request" },
                  h("summary", {}, `${r.touchpoint_name || `#${r.touchpoint_id}`} · ${r.step_id}`, r.url ? h("code", { class: "small muted" }, ` POST ${r.url}`) : null),
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

/** Outcomes over time, from the `$ma_channel_touch` events the engine reports per user. */
async function loadTimeline(ctx, campaign, slot) {
  const since = campaign.published_at || campaign.created_at;
  const points = [];
  let capped = false;
  try {
    for (let offset = 0; ; offset += 1000) {
      const page = await api.get(`/projects/${ctx.pid}/events`, { name: "$ma_channel_touch", since, limit: 1000, offset });
      for (const ev of page.items) {
        const p = ev.properties || {};
        if (Number(p.campaign_id) === campaign.id) points.push({ time: ev.time, status: p.status });
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
  if (!points.length) {
    replace(slot, h("p", { class: "muted small" }, t("campaign.chart.empty")));
    return;
  }
  replace(slot, timeChart(points, { succ: t("status.TOU_SUCC"), fail: t("status.TOU_FAIL") }), capped ? h("p", { class: "muted small" }, t("campaign.chart.capped", { n: formatNumber(EVENT_CAP) })) : null);
}

function deliveriesCard(ctx, cid, tpName) {
  const state = { status: "", gid: "", offset: 0 };
  const body = h("div", {}, spinner());
  const statusSel = h(
    "select",
    { "aria-label": t("campaign.col.status"), "data-testid": "deliveries-status" },
    h("option", { value: "" }, t("campaign.all_outcomes")),
    OUTCOMES.map((s) => h("option", { value: s }, t(`status.${s}`))),
  );
  const gidInput = h("input", { type: "number", min: 1, placeholder: "gid", "aria-label": "gid", "data-testid": "deliveries-gid" });
  const load = async () => {
    try {
      const page = await api.get(`${ctx.base}/${cid}/deliveries`, { status: state.status, gid: state.gid, limit: PAGE, offset: state.offset });
      const kind = { TOU_SUCC: "ok", TOU_FAIL: "error", pending: "warn", suppressed: "muted" };
      replace(
        body,
        page.items.length
          ? h(
              "table",
              { class: "table table-compact", "data-testid": "deliveries-table" },
              h("thead", {}, h("tr", {}, ["gid", "status", "touchpoint", "step", "attempts", "message", "order"].map((c) => h("th", {}, t(`campaign.delivery.${c}`))))),
              h(
                "tbody",
                {},
                page.items.map((d) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, String(d.gid)),
                    h("td", {}, badge(t(`status.${d.status}`), kind[d.status] || "neutral")),
                    h("td", {}, d.touchpoint_id ? tpName.get(String(d.touchpoint_id)) || `#${d.touchpoint_id}` : "—"),
                    h("td", { class: "small" }, d.step_id || "—"),
                    h("td", {}, String(d.attempts ?? 0)),
                    h("td", { class: "small", lang: "en" }, d.error_msg || ""),
                    h("td", {}, d.order_no ? h("code", { class: "small" }, d.order_no) : ""),
                  ),
                ),
              ),
            )
          : h("p", { class: "muted small card-pad" }, t("campaign.no_deliveries")),
        h(
          "div",
          { class: "pager" },
          h("span", { class: "muted small" }, t("campaign.page_info", { from: page.total ? state.offset + 1 : 0, to: state.offset + page.items.length, total: formatNumber(page.total) })),
          h("button", { class: "btn btn-sm", type: "button", disabled: state.offset === 0, onClick: () => { state.offset = Math.max(0, state.offset - PAGE); load(); } }, t("campaign.prev")),
          h("button", { class: "btn btn-sm", type: "button", disabled: state.offset + PAGE >= page.total, onClick: () => { state.offset += PAGE; load(); } }, t("campaign.next")),
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
  let timer = null;
  gidInput.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.gid = gidInput.value.trim();
      state.offset = 0;
      load();
    }, 300);
  });
  load();
  return h("div", { class: "card", "data-testid": "deliveries" }, h("div", { class: "card-pad toolbar" }, h("h3", { class: "spacer" }, t("campaign.deliveries")), statusSel, gidInput), body);
}
