// Campaigns of a space: the list with the actions each state allows (asking first for
// those that send or stop), the editor (campaign_form.js) and the campaign's page
// (campaign_page.js: summary and results).

import { ApiError, api, listAll } from "./api.js";
import { triggerSummary } from "./campaign_summary.js";
import { add, badge, busy, confirmDialog, emptyState, h, modal, replace, spinner, toast } from "./dom.js";
import { errorBox, errorHeading } from "./errors.js";
import { formatNumber, t } from "./i18n.js";
import { formatZoned, projectZone, timeEl, zoned } from "./time.js";

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
const PRIMARY = new Set(["submit", "approve", "publish"]);
// States in which a campaign has a next run to show (a paused one has none).
const SCHEDULED = new Set(["running", "not_started"]);

export function statusBadge(status) {
  return badge(t(`campaign.status.${status}`), STATUS_KIND[status] || "neutral", { "data-status": status, "data-testid": "campaign-status" });
}

/** parts: what follows /p/{pid}/ in the hash. */
export async function renderCampaigns(ctx, parts) {
  const { pid, view, navigate } = ctx;
  // A key bound to some spaces sees only those.
  const spaces = (await listAll(`/projects/${pid}/spaces`)).filter((s) => !ctx.spaceIds || ctx.spaceIds.has(s.id));
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
    const mod = await import("./campaign_page.js");
    await mod.renderCampaignPage(sctx, Number(rest[0]));
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

/**
 * Why the system closed a campaign, in the reader's language (its English sentence in
 * `last_error` stays for the tooltip); null when it was not closed by the system.
 */
export function lastErrorText(campaign) {
  if (!campaign.last_error) return null;
  const params = { ...(campaign.last_error_params || {}) };
  if (params.touchpoint_id !== undefined && !params.name) {
    const ref = (campaign.touchpoints || []).find((r) => r.id === params.touchpoint_id);
    params.name = ref && ref.name ? ref.name : `#${params.touchpoint_id}`;
  }
  return errorHeading({ status: 409, code: campaign.last_error_code || "campaign_broken", params });
}

/** The next run, for campaigns that have one (running or not started). */
export function nextRun(campaign) {
  return SCHEDULED.has(campaign.status) && campaign.next_run_at ? campaign.next_run_at : null;
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
      ctx.writer ? h("a", { class: "btn btn-primary", href: `#/p/${pid}/s/${sid}/campaigns/new`, "data-testid": "campaign-new" }, h("span", { class: "plus" }, "+"), t("campaign.new")) : null,
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
          listFilter.status || !ctx.writer ? null : h("a", { class: "btn btn-primary", href: `#/p/${pid}/s/${sid}/campaigns/new` }, t("campaign.new")),
        ),
      );
      return;
    }
    replace(
      slot,
      h(
        "table",
        { class: "table table-stack", "data-testid": "campaign-table" },
        h("thead", {}, h("tr", {}, ["name", "status", "trigger", "next_run", "updated", "actions"].map((c) => h("th", { class: `col-${c}` }, t(`campaign.col.${c}`), c === "next_run" || c === "updated" ? h("div", { class: "th-note" }, projectZone()) : null)))),
        h(
          "tbody",
          {},
          items.map((c) =>
            h(
              "tr",
              { "data-testid": "campaign-row", "data-id": c.id, "data-name": c.name },
              h("td", {}, h("a", { class: "strong", href: `#/p/${pid}/s/${sid}/campaigns/${c.id}`, "data-testid": "campaign-link" }, c.name), c.last_error ? h("div", { class: "small field-error", title: c.last_error, "data-testid": "campaign-last-error" }, lastErrorText(c)) : null),
              h("td", { "data-label": t("campaign.col.status") }, statusBadge(c.status)),
              h("td", { class: "small", "data-label": t("campaign.col.trigger") }, triggerSummary(c.trigger)),
              h("td", { class: "small muted", "data-label": zoned(t("campaign.col.next_run")), "data-testid": "campaign-next-run" }, timeEl(nextRun(c), { label: false })),
              h("td", { class: "small muted", "data-label": zoned(t("campaign.col.updated")) }, timeEl(c.updated_at, { label: false })),
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
  // A viewer's key reads campaigns; every action needs an operator's.
  const allowed = ctx.writer ? campaign.allowed_actions || [] : [];
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
        const reason = await askReason(campaign);
        if (reason === null) return;
        body = reason ? { reason } : {};
      } else if (!(await confirmAction(ctx, campaign, action))) return;
      try {
        const out = action === "copy" ? await copyCampaign(ctx, campaign) : await api.post(`${base}/${campaign.id}/${action}`, body);
        toast(actionToast(action, out));
        if (action === "copy") {
          navigate(`#/p/${pid}/s/${sid}/campaigns/${out.id}/edit`);
          return;
        }
      } catch (err) {
        showActionError(err);
      }
      await reload();
    }, PRIMARY.has(action) ? "btn-primary" : action === "close" ? "btn-danger-ghost" : null);
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

/** What happened, with the campaign's name ("已提交审批：每日会员提醒"). */
function actionToast(action, out) {
  // With approval switched off, a submitted campaign is ready to publish at once.
  const key = action === "submit" && out.status === "awaiting_publish" ? "submit_ready" : action;
  return t(`campaign.toast.${key}`, { name: out.name });
}

/**
 * Ask before the actions that send or stop: publish (saying whom it reaches now),
 * resume and end (结束活动). Resolves to true when the user goes ahead.
 */
async function confirmAction(ctx, campaign, action) {
  const name = campaign.name;
  if (action === "publish") {
    const reach = h("p", { "data-testid": "publish-reach" }, t("common.loading"));
    const asked = confirmDialog(t("campaign.confirm.publish", { name }), h("div", {}, reach, h("p", { class: "muted small" }, t("campaign.confirm.publish_note"))), { okLabel: t("campaign.action.publish"), testid: "publish-confirm" });
    publishReach(ctx, campaign).then((text) => (reach.textContent = text));
    return asked;
  }
  if (action === "resume") return confirmDialog(t("campaign.confirm.resume", { name }), t("campaign.confirm.resume_text", { name }), { okLabel: t("campaign.action.resume"), testid: "resume-confirm" });
  if (action === "close") return confirmDialog(t("campaign.confirm.close", { name }), t("campaign.confirm.close_text", { name }), { danger: true, okLabel: t("campaign.action.close"), testid: "close-confirm" });
  return true;
}

/** The users the audience matches now (the preview's `audience_size`), or null. */
export async function audienceSize(ctx, campaign) {
  try {
    const out = await api.post(`${ctx.base}/${campaign.id}/preview`, { sample: 1 });
    return typeof out.audience_size === "number" ? out.audience_size : null;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return null;
  }
}

/** Whom publishing reaches, and when, in one sentence. */
async function publishReach(ctx, campaign) {
  const trigger = campaign.trigger || {};
  if (trigger.type === "event" || trigger.type === "event_without") return t("campaign.reach.event", { event: trigger.event || "" });
  const n = await audienceSize(ctx, campaign);
  const users = n === null ? t("campaign.reach.unknown") : t("campaign.reach.users", { n: formatNumber(n) });
  if (trigger.type === "once" && !trigger.at) {
    const first = campaign.strategy || {};
    const timing = first.timing || { type: "now" };
    if (first.type === "send" && timing.type === "delay") return t("campaign.reach.now_delayed", { users, minutes: formatNumber(timing.minutes) });
    return t("campaign.reach.now", { users });
  }
  if (trigger.type === "once") return t("campaign.reach.at", { users, at: formatZoned(trigger.at) });
  return t("campaign.reach.recurring", { users, schedule: triggerSummary(trigger) });
}

/** A copy named in the reader's language ("每日会员提醒 副本"), unique in the space. */
async function copyCampaign(ctx, campaign) {
  const url = `${ctx.base}/${campaign.id}/copy`;
  const max = 20;
  for (let n = 1; n <= 5; n++) {
    const suffix = n === 1 ? t("campaign.copy_suffix") : t("campaign.copy_suffix_n", { n });
    const stem = [...campaign.name].slice(0, Math.max(1, max - [...suffix].length)).join("").trimEnd();
    try {
      return await api.post(url, { name: `${stem}${suffix}` });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.code === "name_taken") continue;
      // A server from before copies took a name: let it name the copy itself.
      if (err.status === 422 && err.fieldErrors.some((f) => f.field === "name")) return api.post(url, {});
      throw err;
    }
  }
  return api.post(url, {});
}

function showActionError(err) {
  if (!(err instanceof ApiError)) throw err;
  const m = modal({ title: errorHeading(err), size: "sm", testid: "action-error" });
  m.body.appendChild(errorBox(err));
  m.footer.appendChild(h("button", { class: "btn btn-primary", type: "button", onClick: () => m.close() }, t("common.ok")));
}

function askReason(campaign) {
  return new Promise((resolve) => {
    let answer = null;
    const input = h("textarea", { rows: 3, "data-testid": "reject-reason", placeholder: t("campaign.reject_placeholder") });
    const m = modal({ title: t("campaign.reject_title", { name: campaign.name }), size: "sm", testid: "reject-dialog", onClose: () => resolve(answer), isDirty: () => input.value.trim() !== "" });
    add(m.body, h("div", { class: "field" }, h("label", { class: "field-label" }, t("campaign.reject_reason")), input));
    add(m.footer, 
      h("button", { class: "btn", type: "button", onClick: () => m.dismiss() }, t("common.cancel")),
      h("button", { class: "btn btn-danger", type: "button", "data-testid": "reject-ok", onClick: () => { answer = input.value.trim(); m.close(); } }, t("campaign.action.reject")),
    );
  });
}
