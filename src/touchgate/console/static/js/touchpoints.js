// The touchpoint list of a project and its actions: authorise spaces, edit, test,
// disable/enable, delete — with the rules visible (edit and delete only while disabled).
// The frequent actions are buttons; the rest sit under "More" so the row fits.

import { ApiError, api, listAll } from "./api.js";
import { add, badge, busy, confirmDialog, emptyState, h, menu, modal, onTypingPause, replace, spinner, toast } from "./dom.js";
import { errorBox, errorText } from "./errors.js";
import { formatRelative, t } from "./i18n.js";
import { formatZoned, projectZone, timeEl, zoned } from "./time.js";

const TYPES = ["notification", "benefit", "other"];
const filters = { q: "", status: "", type: "" };

export async function renderTouchpoints(ctx) {
  const { pid, view } = ctx;
  const tableSlot = h("div", { class: "card table-card" }, spinner());
  const search = h("input", {
    type: "search",
    class: "search",
    placeholder: t("tp.search"),
    value: filters.q,
    "aria-label": t("tp.search"),
    "data-testid": "tp-search",
  });
  const statusSel = h(
    "select",
    { "aria-label": t("tp.col.status"), "data-testid": "tp-filter-status" },
    h("option", { value: "" }, t("tp.filter.all_statuses")),
    ["enabled", "disabled"].map((s) => h("option", { value: s, selected: filters.status === s }, t(`tp.status.${s}`))),
  );
  const typeSel = h(
    "select",
    { "aria-label": t("tp.col.type"), "data-testid": "tp-filter-type" },
    h("option", { value: "" }, t("tp.filter.all_types")),
    TYPES.map((s) => h("option", { value: s, selected: filters.type === s }, t(`tp.type.${s}`))),
  );
  const addBtn = h(
    "button",
    { class: "btn btn-primary", type: "button", "data-testid": "tp-add" },
    h("span", { class: "plus" }, "+"),
    t("tp.add"),
  );
  replace(
    view,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, t("tp.title")), h("p", { class: "muted" }, t("tp.subtitle"))),
      ctx.admin ? addBtn : null,
    ),
    ctx.admin ? null : h("div", { class: "alert alert-info", "data-testid": "read-only" }, t("tp.read_only")),
    h("div", { class: "toolbar" }, search, statusSel, typeSel),
    tableSlot,
  );

  let spaces = [];
  const state = { touchpoints: [] };

  const reload = async () => {
    const [items, spaceItems] = await Promise.all([
      listAll(`/projects/${pid}/touchpoints`, { q: filters.q, status: filters.status, type: filters.type }),
      listAll(`/projects/${pid}/spaces`),
    ]);
    if (!ctx.isCurrent()) return;
    spaces = spaceItems;
    state.touchpoints = items;
    renderTable();
  };

  const actions = {
    reload,
    spaces: () => spaces,
    ctx,
  };

  const renderTable = () => {
    if (!state.touchpoints.length) {
      const filtered = filters.q || filters.status || filters.type;
      replace(
        tableSlot,
        filtered
          ? emptyState(t("tp.none_match_title"), t("tp.none_match_text"))
          : emptyState(
              t("tp.none_title"),
              t("tp.none_text"),
              ctx.admin ? h("button", { class: "btn btn-primary", type: "button", onClick: () => openForm(ctx, null, actions) }, t("tp.add")) : null,
            ),
      );
      return;
    }
    const spaceName = new Map(spaces.map((s) => [s.id, s.name]));
    replace(
      tableSlot,
      h(
        "table",
        { class: "table table-stack", "data-testid": "tp-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["name", "type", "status", "spaces", "last_test", "updated", ctx.admin ? "actions" : null].filter(Boolean).map((c) =>
              h("th", { class: `col-${c}` }, t(`tp.col.${c}`), c === "updated" ? h("div", { class: "th-note" }, projectZone()) : null),
            ),
          ),
        ),
        h(
          "tbody",
          {},
          state.touchpoints.map((tp) => row(tp, spaceName, actions)),
        ),
      ),
    );
  };

  onTypingPause(search, () => {
    filters.q = search.value.trim();
    reload().catch(showError);
  });
  statusSel.addEventListener("change", () => {
    filters.status = statusSel.value;
    reload().catch(showError);
  });
  typeSel.addEventListener("change", () => {
    filters.type = typeSel.value;
    reload().catch(showError);
  });
  addBtn.addEventListener("click", () => openForm(ctx, null, actions));
  const showError = (err) => replace(tableSlot, errorBox(err));
  await reload();
}

async function openForm(ctx, touchpoint, actions) {
  const mod = await import("./touchpoint_form.js");
  mod.openTouchpointForm(ctx, touchpoint, actions.reload);
}

/**
 * What stands between a touchpoint and its use in a campaign, as short notes: never
 * tested or its last test failed, disabled, not authorised to the space, deliveries
 * paused by its health check. [{kind, text}], empty when it is ready.
 */
export function readinessNotes(tp, { spaceId } = {}) {
  const notes = [];
  const last = tp.last_test;
  if (!last || !last.at) notes.push({ kind: "warn", key: "never_tested", text: t("tp.never_tested") });
  else if (!last.ok) notes.push({ kind: "error", key: "test_failed", text: t("tp.last_test_failed") });
  if (tp.status && tp.status !== "enabled") notes.push({ kind: "muted", key: "disabled", text: t("tp.status.disabled") });
  if (spaceId !== undefined && !(tp.space_ids || []).includes(spaceId)) notes.push({ kind: "muted", key: "not_authorised", text: t("tp.not_authorised") });
  const health = tp.health && tp.health.state;
  if (health && health !== "closed") notes.push({ kind: "error", key: `health_${health}`, text: t(`tp.health.${health}`) });
  return notes;
}

/**
 * readinessNotes as badges (null when ready): for the campaign editor's touchpoint
 * picker, so an operator sees "Never tested" before choosing it.
 */
export function readinessBadges(tp, opts = {}) {
  const notes = readinessNotes(tp, opts);
  if (!notes.length) return null;
  return h(
    "span",
    { class: "chips", "data-testid": "tp-readiness" },
    notes.map((n) => badge(n.text, n.kind, { "data-note": n.key, title: n.key === "never_tested" ? t("tp.never_tested_hint") : null })),
  );
}

function lastTest(tp) {
  const last = tp.last_test;
  // Prominent rather than blocking: an untested touchpoint can be used, but it stands out.
  if (!last || !last.at) return badge(t("tp.never_tested"), "warn", { title: t("tp.never_tested_hint") });
  return h(
    "div",
    { class: "stack-xs", title: formatZoned(last.at) },
    last.ok ? badge(t("tp.test_ok"), "ok") : badge(t("tp.test_failed"), "error"),
    h("span", { class: "muted small" }, formatRelative(last.at)),
  );
}

/** The breaker: deliveries paused after repeated failures (absent from older servers). */
function healthBadge(tp) {
  const health = tp.health;
  if (!health || !health.state || health.state === "closed") return null;
  const why = [health.reason, health.since ? t("tp.health.since", { at: formatZoned(health.since) }) : null].filter(Boolean).join(" · ");
  return badge(t(`tp.health.${health.state}`), health.state === "open" ? "error" : "warn", { title: why || null, "data-testid": "tp-health", "data-state": health.state });
}

function row(tp, spaceName, actions) {
  const enabled = tp.status === "enabled";
  const btn = (label, testid, onClick, opts = {}) => {
    const b = h(
      "button",
      {
        class: "btn btn-sm btn-ghost",
        type: "button",
        "data-testid": testid,
        disabled: opts.disabled || false,
        title: opts.title || null,
        "aria-disabled": opts.disabled ? "true" : null,
      },
      label,
    );
    b.addEventListener("click", busy(b, onClick));
    // A disabled button gets no pointer events, so the reason also sits on a wrapper.
    return opts.disabled ? h("span", { class: "tip-wrap", title: opts.title || null }, b) : b;
  };
  const spacesCell = (tp.space_ids || []).length
    ? h("div", { class: "chips" }, tp.space_ids.map((id) => h("span", { class: "chip" }, spaceName.get(id) || `#${id}`)))
    : h("span", { class: "muted" }, t("tp.no_spaces"));
  const health = tp.health && tp.health.state;
  const more = menu(t("tp.action.more"), [
    tp.transport === "plugin"
      ? null
      : {
          label: t("tp.action.doctor"),
          testid: "tp-doctor",
          onClick: async () => {
            const mod = await import("./doctor.js");
            mod.openDoctorDialog(actions.ctx, tp);
          },
        },
    enabled
      ? { label: t("tp.action.disable"), testid: "tp-disable", onClick: () => disable(tp, actions) }
      : { label: t("tp.action.enable"), testid: "tp-enable", onClick: () => enable(tp, actions) },
    {
      label: t("tp.action.protection"),
      testid: "tp-protection",
      onClick: async () => {
        const mod = await import("./protection.js");
        await mod.openTouchpointProtection(actions.ctx, tp, actions.reload);
      },
    },
    { label: t("tp.action.rotate"), testid: "tp-rotate", title: t("tp.rotate_hint"), onClick: () => rotate(tp, actions) },
    health && health !== "closed" ? { label: t("tp.action.reset_health"), testid: "tp-health-reset", title: t("tp.reset_health_hint"), onClick: () => resetHealth(tp, actions) } : null,
    {
      label: t("tp.action.delete"),
      testid: "tp-delete",
      danger: true,
      disabled: enabled,
      title: enabled ? t("tp.delete_locked_reason") : null,
      onClick: () => remove(tp, actions),
    },
  ], { testid: "tp-more" });
  return h(
    "tr",
    { "data-testid": "tp-row", "data-id": tp.id, "data-name": tp.name },
    h(
      "td",
      { class: "col-name" },
      h("div", { class: "strong" }, tp.name),
      tp.description ? h("div", { class: "muted small clamp", title: tp.description }, tp.description) : null,
    ),
    h(
      "td",
      { "data-label": t("tp.col.type") },
      h("div", { class: "stack-xs" }, badge(t(`tp.type.${tp.type}`), "neutral"), h("span", { class: "muted small", "data-testid": "tp-transport" }, tp.transport === "plugin" ? t("tp.transport.plugin") : t("tp.transport.http"))),
    ),
    h(
      "td",
      { "data-label": t("tp.col.status") },
      h(
        "div",
        { class: "stack-xs" },
        h("span", { "data-testid": "tp-status" }, enabled ? badge(t("tp.status.enabled"), "ok", { "data-status": "enabled" }) : badge(t("tp.status.disabled"), "muted", { "data-status": "disabled" })),
        healthBadge(tp),
      ),
    ),
    h("td", { "data-testid": "tp-spaces", "data-label": t("tp.col.spaces") }, spacesCell),
    h("td", { "data-testid": "tp-last-test", "data-label": t("tp.col.last_test") }, lastTest(tp)),
    h("td", { class: "muted small col-updated", "data-label": zoned(t("tp.col.updated")) }, timeEl(tp.updated_at, { label: false })),
    // Every action on a touchpoint needs an admin key.
    !actions.ctx.admin ? null : h(
      "td",
      { class: "col-actions" },
      h(
        "div",
        { class: "row-actions" },
        btn(t("tp.action.spaces"), "tp-spaces-btn", () => openSpaces(tp, actions)),
        btn(t("tp.action.edit"), "tp-edit", () => openForm(actions.ctx, tp, actions), { disabled: enabled, title: enabled ? t("tp.locked_reason") : null }),
        btn(t("tp.action.test"), "tp-test", async () => {
          const mod = await import("./test_dialog.js");
          await mod.openTestDialog(actions.ctx, tp, actions.reload);
        }),
        more,
      ),
    ),
  );
}

/** An action's failure as a toast: the translated heading and the server's words. */
function failed(err) {
  toast(errorText(err), "error");
}

async function resetHealth(tp, actions) {
  try {
    await api.post(`/projects/${actions.ctx.pid}/touchpoints/${tp.id}/health/reset`);
    toast(t("tp.health_reset_toast", { name: tp.name }));
  } catch (err) {
    failed(err);
  }
  await actions.reload();
}

async function enable(tp, actions) {
  try {
    await api.post(`/projects/${actions.ctx.pid}/touchpoints/${tp.id}/enable`);
    toast(t("tp.enabled_toast", { name: tp.name }));
  } catch (err) {
    failed(err);
  }
  await actions.reload();
}

async function disable(tp, actions) {
  const { pid } = actions.ctx;
  const ok = await confirmDialog(t("tp.disable_title", { name: tp.name }), t("tp.disable_text", { name: tp.name }), { danger: true, okLabel: t("tp.action.disable"), testid: "disable-confirm" });
  if (!ok) return;
  try {
    await api.post(`/projects/${pid}/touchpoints/${tp.id}/disable`);
    toast(t("tp.disabled_toast", { name: tp.name }));
  } catch (err) {
    if (err instanceof ApiError && err.code === "touchpoint_in_use") {
      showInUse(tp, err, pid);
    } else {
      failed(err);
    }
  }
  await actions.reload();
}

// What each blocking campaign's state lets its owner do to free the touchpoint.
const UNBLOCK = {
  running: "pause_end",
  not_started: "pause_end",
  paused: "end",
  awaiting_publish: "edit_delete",
  in_approval: "withdraw_reject",
};

/** The refusal to disable, with a link to every campaign that blocks it and what to do. */
function showInUse(tp, err, pid) {
  const campaigns = (err.details && err.details.campaigns) || [];
  const m = modal({ title: t("tp.in_use_title"), size: "sm", testid: "in-use" });
  add(m.body,
    h("div", { class: "alert alert-warn" }, h("div", { class: "alert-title" }, t("error.code.touchpoint_in_use")), t("tp.in_use_text", { name: tp.name })),
    h(
      "ul",
      { class: "link-list", "data-testid": "blocking-campaigns" },
      campaigns.map((c) =>
        h(
          "li",
          {},
          h(
            "a",
            {
              href: c.space_id ? `#/p/${pid}/s/${c.space_id}/campaigns/${c.id}` : `#/p/${pid}/campaign/${c.id}`,
              "data-testid": "blocking-campaign",
              onClick: () => m.close(),
            },
            c.name,
          ),
          " ",
          badge(t(`campaign.status.${c.status}`), "warn"),
          UNBLOCK[c.status] ? h("div", { class: "muted small", "data-testid": "unblock-hint" }, t(`tp.unblock.${UNBLOCK[c.status]}`)) : null,
        ),
      ),
    ),
    h("p", { class: "muted small" }, t("tp.in_use_hint")),
  );
  add(m.footer, h("button", { class: "btn btn-primary", type: "button", onClick: () => m.close() }, t("common.ok")));
}

/** A new signing secret, shown once; the old one keeps signing during the grace period. */
async function rotate(tp, actions) {
  const ok = await confirmDialog(t("tp.rotate_title"), t("tp.rotate_text", { name: tp.name }), { okLabel: t("tp.action.rotate") });
  if (!ok) return;
  try {
    const out = await api.post(`/projects/${actions.ctx.pid}/touchpoints/${tp.id}/rotate-secret`);
    const mod = await import("./touchpoint_form.js");
    mod.showSecret({ name: tp.name, signing_secret: out.signing_secret }, t("tp.rotated_text", { name: tp.name, until: formatZoned(out.previous_secret_expires_at) }));
  } catch (err) {
    failed(err);
  }
}

async function remove(tp, actions) {
  const ok = await confirmDialog(t("tp.delete_title"), t("tp.delete_text", { name: tp.name }), {
    danger: true,
    okLabel: t("tp.action.delete"),
  });
  if (!ok) return;
  try {
    await api.del(`/projects/${actions.ctx.pid}/touchpoints/${tp.id}`);
    toast(t("tp.deleted_toast", { name: tp.name }));
  } catch (err) {
    failed(err);
  }
  await actions.reload();
}

/** Which spaces may use the touchpoint: the project's spaces as checkboxes. */
function openSpaces(tp, actions) {
  const spaces = actions.spaces();
  const chosen = new Set(tp.space_ids || []);
  const saved = [...chosen].sort().join(",");
  const m = modal({ title: t("tp.spaces_title", { name: tp.name }), size: "sm", testid: "spaces-dialog", isDirty: () => [...chosen].sort().join(",") !== saved });
  const errSlot = h("div");
  add(m.body, 
    h("p", { class: "muted" }, t("tp.spaces_text")),
    tp.status !== "enabled" ? h("div", { class: "alert alert-info" }, t("tp.spaces_disabled_note")) : null,
    spaces.length
      ? h(
          "div",
          { class: "check-list", "data-field": "space_ids" },
          spaces.map((s) =>
            h(
              "label",
              { class: "check" },
              h("input", {
                type: "checkbox",
                value: s.id,
                checked: chosen.has(s.id),
                "data-testid": `space-${s.name}`,
                onChange: (e) => (e.target.checked ? chosen.add(s.id) : chosen.delete(s.id)),
              }),
              s.name,
            ),
          ),
        )
      : emptyState(t("tp.no_spaces_in_project"), t("tp.no_spaces_in_project_text")),
    errSlot,
  );
  const save = h("button", { class: "btn btn-primary", type: "button", "data-testid": "spaces-save" }, t("common.save"));
  save.addEventListener(
    "click",
    busy(save, async () => {
      replace(errSlot);
      try {
        await api.put(`/projects/${actions.ctx.pid}/touchpoints/${tp.id}/spaces`, {
          space_ids: spaces.filter((s) => chosen.has(s.id)).map((s) => s.id),
        });
        m.close();
        toast(t("tp.spaces_saved", { name: tp.name }));
        await actions.reload();
      } catch (err) {
        errSlot.appendChild(errorBox(err));
      }
    }),
  );
  add(m.footer, h("button", { class: "btn", type: "button", onClick: () => m.dismiss() }, t("common.cancel")), save);
}
