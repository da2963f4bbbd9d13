// Team access: the project's API keys (create — the key shown once with a copy
// button —, list with last use, revoke) and the audit log, filterable by resource.
// Both pages need an admin key; for others the API's 403 is shown as it is.
//
// An audit entry reads as a sentence in the reader's language: the text
// audit.entry.<resource_type>.<action> filled from the entry's params (the names,
// counts and changed `fields` the server recorded); its changes list fields by their
// labels. The server's English summary stays in a tooltip only. Entries recorded
// before params were kept (params null) say what and which resource (audit.legacy).

import { api, listAll } from "./api.js";
import { badge, busy, confirmDialog, emptyState, field, h, modal, onTypingPause, replace, spinner, toast } from "./dom.js";
import { errorBox, errorText, fieldLabel, fillTemplate, valueEl } from "./errors.js";
import { formatRelative, t, tMaybe } from "./i18n.js";
import { formatZoned, projectZone, timeEl, zoned } from "./time.js";

const ROLES = ["viewer", "operator", "admin"];
const RESOURCE_TYPES = ["project", "space", "attribute", "users", "touchpoint", "protection", "blocklist", "plugin", "campaign", "order", "api_key"];
const PAGE = 50;
// Columns of times, whose heading names the project's zone.
const TIMES = new Set(["expires", "created"]);

function pageHead(titleKey, subtitleKey, action) {
  return h("div", { class: "page-head" }, h("div", {}, h("h1", {}, t(titleKey)), h("p", { class: "muted" }, t(subtitleKey))), action || null);
}

// -- API keys ---------------------------------------------------------------------

export async function renderKeys(ctx) {
  const { pid, view } = ctx;
  const tableSlot = h("div", { class: "card table-card" }, spinner());
  // Enabled once the project's spaces are loaded: the form offers them.
  const addBtn = h("button", { class: "btn btn-primary", type: "button", "data-testid": "key-add", disabled: true }, h("span", { class: "plus" }, "+"), t("keys.add"));
  replace(view, pageHead("keys.title", "keys.subtitle", addBtn), tableSlot);
  let spaces = [];

  const reload = async () => {
    const [keys, spaceItems] = await Promise.all([listAll("/api-keys"), listAll(`/projects/${pid}/spaces`)]);
    if (!ctx.isCurrent()) return;
    spaces = spaceItems;
    addBtn.disabled = false;
    // An admin of the whole service sees every key; this page shows this project's.
    const mine = keys.filter((k) => k.project_id === pid);
    if (!mine.length) {
      replace(tableSlot, emptyState(t("keys.none_title"), t("keys.none_text")));
      return;
    }
    const spaceName = new Map(spaces.map((s) => [s.id, s.name]));
    replace(
      tableSlot,
      h(
        "table",
        { class: "table table-stack", "data-testid": "keys-table" },
        h("thead", {}, h("tr", {}, ["name", "role", "spaces", "expires", "last_used", "created", "actions"].map((c) => h("th", { class: `col-${c}` }, t(`keys.col.${c}`), TIMES.has(c) ? h("div", { class: "th-note" }, projectZone()) : null)))),
        h("tbody", {}, mine.map((k) => keyRow(k, spaceName, reload))),
      ),
    );
  };
  addBtn.addEventListener("click", () => openCreate(pid, () => spaces, reload));
  try {
    await reload();
  } catch (err) {
    replace(tableSlot, errorBox(err));
  }
}

function keyRow(key, spaceName, reload) {
  const expired = key.expires_at && new Date(key.expires_at) <= new Date();
  const revoke = h("button", { class: "btn btn-danger-ghost btn-sm", type: "button", "data-testid": "key-revoke" }, t("keys.revoke"));
  revoke.addEventListener(
    "click",
    busy(revoke, async () => {
      if (!(await confirmDialog(t("keys.revoke_title"), t("keys.revoke_text", { name: key.name }), { danger: true, okLabel: t("keys.revoke") }))) return;
      try {
        await api.del(`/api-keys/${key.id}`);
        toast(t("keys.revoked", { name: key.name }));
        await reload();
      } catch (err) {
        toast(errorText(err), "error");
      }
    }),
  );
  return h(
    "tr",
    { "data-testid": "key-row", "data-key-id": key.id },
    h("td", { class: "strong col-name" }, key.name),
    h("td", { "data-label": t("keys.col.role") }, badge(t(`keys.role.${key.role}`), key.role === "admin" ? "warn" : "info")),
    h("td", { "data-label": t("keys.col.spaces") }, key.space_ids ? h("div", { class: "chips" }, key.space_ids.map((id) => h("span", { class: "chip" }, spaceName.get(id) || `#${id}`))) : h("span", { class: "muted" }, t("keys.all_spaces"))),
    h("td", { "data-label": zoned(t("keys.col.expires")) }, key.expires_at ? (expired ? badge(t("keys.expired"), "error") : timeEl(key.expires_at, { label: false })) : h("span", { class: "muted" }, t("keys.never"))),
    h("td", { "data-label": t("keys.col.last_used"), title: key.last_used_at ? formatZoned(key.last_used_at) : null }, key.last_used_at ? formatRelative(key.last_used_at) : h("span", { class: "muted" }, t("keys.never_used"))),
    h("td", { "data-label": zoned(t("keys.col.created")) }, timeEl(key.created_at, { label: false })),
    h("td", { class: "col-actions" }, h("div", { class: "row-actions" }, revoke)),
  );
}

function openCreate(pid, spaces, reload) {
  const m = modal({ title: t("keys.add"), testid: "key-form" });
  const name = h("input", { type: "text", maxlength: 100, "data-testid": "key-name", required: true });
  const role = h("select", { "data-testid": "key-role" }, ROLES.map((r) => h("option", { value: r }, t(`keys.role.${r}`))));
  const spaceBoxes = spaces().map((s) => h("label", { class: "check" }, h("input", { type: "checkbox", value: s.id, "data-testid": `key-space-${s.id}` }), s.name));
  const spaceWrap = h("div", { class: "check-list" }, spaceBoxes.length ? spaceBoxes : h("span", { class: "muted" }, t("keys.no_spaces")));
  const expires = h("input", { type: "datetime-local", "data-testid": "key-expires" });
  const errorSlot = h("div");
  const syncRole = () => {
    // An admin key covers the whole project.
    for (const box of spaceWrap.querySelectorAll("input")) box.disabled = role.value === "admin";
  };
  role.addEventListener("change", syncRole);
  m.body.append(
    field(t("keys.field.name"), name, { required: true, field: "name" }),
    field(t("keys.field.role"), role, { hint: t("keys.role_hint"), field: "role" }),
    field(t("keys.field.spaces"), spaceWrap, { hint: t("keys.spaces_hint"), field: "space_ids" }),
    field(t("keys.field.expires"), expires, { hint: t("keys.expires_hint"), field: "expires_at" }),
    errorSlot,
  );
  const submit = h("button", { class: "btn btn-primary", type: "button", "data-testid": "key-submit" }, t("keys.create"));
  m.footer.append(h("button", { class: "btn", type: "button", onClick: () => m.close() }, t("common.cancel")), submit);
  submit.addEventListener(
    "click",
    busy(submit, async () => {
      replace(errorSlot);
      const chosen = [...spaceWrap.querySelectorAll("input:checked")].map((b) => Number(b.value));
      const body = { name: name.value, role: role.value, project_id: pid };
      if (role.value !== "admin" && chosen.length) body.space_ids = chosen;
      // datetime-local is the browser's local time; the API wants a zone.
      if (expires.value) body.expires_at = new Date(expires.value).toISOString();
      try {
        const created = await api.post("/api-keys", body);
        m.close();
        showKeyOnce(created);
        await reload();
      } catch (err) {
        errorSlot.appendChild(errorBox(err));
      }
    }),
  );
  name.focus();
}

function showKeyOnce(created) {
  const m = modal({ title: t("keys.created_title", { name: created.name }), testid: "key-created" });
  const value = h("input", { type: "text", readonly: true, value: created.key, class: "key-value", "data-testid": "key-value", "aria-label": t("keys.the_key") });
  const copy = h("button", { class: "btn", type: "button", "data-testid": "key-copy" }, t("keys.copy"));
  copy.addEventListener("click", async () => {
    value.select();
    try {
      await navigator.clipboard.writeText(created.key);
      toast(t("keys.copied"));
    } catch {
      // Without clipboard access (plain http), the key is selected for Ctrl+C.
      toast(t("keys.copy_manually"), "error");
    }
  });
  m.body.append(h("div", { class: "alert alert-info" }, t("keys.shown_once")), h("div", { class: "key-box" }, value, copy));
  m.footer.append(h("button", { class: "btn btn-primary", type: "button", "data-testid": "key-done", onClick: () => m.close() }, t("keys.done")));
  value.select();
}

// -- audit log ----------------------------------------------------------------------

const auditFilters = { resource_type: "", resource_id: "" };

export async function renderAudit(ctx) {
  const { pid, view } = ctx;
  const typeSel = h(
    "select",
    { "aria-label": t("audit.col.resource"), "data-testid": "audit-type" },
    h("option", { value: "" }, t("audit.all_types")),
    RESOURCE_TYPES.map((r) => h("option", { value: r, selected: auditFilters.resource_type === r }, t(`audit.type.${r}`))),
  );
  const idInput = h("input", { type: "search", class: "search", placeholder: t("audit.resource_id"), value: auditFilters.resource_id, "aria-label": t("audit.resource_id"), "data-testid": "audit-id" });
  const listSlot = h("div", { class: "card table-card" }, spinner());
  const more = h("button", { class: "btn", type: "button", "data-testid": "audit-more" }, t("audit.more"));
  const showMore = (visible) => {
    more.style.display = visible ? "" : "none";
  };
  showMore(false);
  replace(view, pageHead("audit.title", "audit.subtitle"), h("div", { class: "toolbar" }, typeSel, idInput), listSlot, h("div", { class: "load-more" }, more));
  let items = [];
  let total = 0;

  const load = async (reset) => {
    const query = { limit: PAGE, offset: reset ? 0 : items.length };
    if (auditFilters.resource_type) query.resource_type = auditFilters.resource_type;
    if (auditFilters.resource_id) query.resource_id = auditFilters.resource_id;
    const page = await api.get(`/projects/${pid}/audit`, query);
    if (!ctx.isCurrent()) return;
    items = reset ? page.items : items.concat(page.items);
    total = page.total;
    showMore(items.length < total);
    if (!items.length) {
      replace(listSlot, emptyState(t("audit.none_title"), t("audit.none_text")));
      return;
    }
    replace(
      listSlot,
      h(
        "table",
        { class: "table table-stack", "data-testid": "audit-table" },
        h("thead", {}, h("tr", {}, ["time", "who", "action", "resource", "summary"].map((c) => h("th", { class: `col-${c}` }, t(`audit.col.${c}`))))),
        h("tbody", {}, items.map((e) => auditRow(e))),
      ),
    );
  };
  const reloadShowingErrors = () => load(true).catch((err) => replace(listSlot, errorBox(err)));
  typeSel.addEventListener("change", () => {
    auditFilters.resource_type = typeSel.value;
    reloadShowingErrors();
  });
  onTypingPause(idInput, () => {
    auditFilters.resource_id = idInput.value.trim();
    reloadShowingErrors();
  });
  more.addEventListener("click", busy(more, () => load(false).catch((err) => toast(errorText(err), "error"))));
  await reloadShowingErrors();
}

// Values that are one of a few words, shown in the reader's: field → key prefix.
const VALUE_WORDS = { role: "keys.role.", status: { campaign: "campaign.status.", touchpoint: "tp.status." } };
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** A field of a resource by its label: "Batch size", not batch_size. */
function auditFieldLabel(name) {
  return tMaybe(`audit.field.${name}`) ?? fieldLabel(name);
}

function valueWord(entry, field, value) {
  const prefix = VALUE_WORDS[field];
  const key = typeof prefix === "object" ? prefix[entry.resource_type] : prefix;
  return key && typeof value === "string" ? tMaybe(key + value) : null;
}

/** An old or new value of a change: words and times in the reader's terms, data as it is. */
function showValue(entry, field, value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return t(value ? "common.yes" : "common.no");
  if (typeof value !== "string") return JSON.stringify(value);
  return valueWord(entry, field, value) ?? (ISO_TIME.test(value) ? formatZoned(value) : value);
}

function paramNodes(entry, name) {
  const value = entry.params[name];
  if (name === "fields") {
    if (!Array.isArray(value) || !value.length) return [t("audit.no_change")];
    return [h("span", { class: "msg-field" }, value.map(auditFieldLabel).join(t("audit.list_sep")))];
  }
  if (name === "role") return [valueWord(entry, "role", value) ?? valueEl(value)];
  if (name === "outcome") return [tMaybe(`audit.outcome.${value}`) ?? valueEl(value)];
  // A resource whose name was not recorded is named by its id.
  if (name === "name" && (value === null || value === undefined)) return [valueEl(`#${entry.resource_id}`)];
  return [valueEl(value)];
}

/** Who wrote: the key's name; writes made on the server's command line have no key. */
function whoLabel(entry) {
  if (entry.key_id === null && entry.key_name === "command line") return t("audit.command_line");
  return entry.key_name || "—";
}

/** The entry as a sentence in the reader's language. */
function sentence(entry) {
  const template = entry.params ? tMaybe(`audit.entry.${entry.resource_type}.${entry.action}`) : null;
  if (template !== null) return fillTemplate(template, (name) => paramNodes(entry, name));
  return [t("audit.legacy", { action: actionLabel(entry.action), type: typeLabel(entry.resource_type), id: entry.resource_id })];
}

function actionLabel(action) {
  return tMaybe(`audit.action.${action}`) || action;
}

function typeLabel(type) {
  return tMaybe(`audit.type.${type}`) || type;
}

function changeCell(entry, field, value) {
  const text = showValue(entry, field, value);
  return h("td", { class: "clamp", title: text }, text);
}

function auditRow(entry) {
  const names = Object.keys(entry.changes || {});
  const changes = names.length
    ? h(
        "details",
        { class: "changes" },
        h("summary", {}, t("audit.changes", { n: names.length })),
        h(
          "table",
          { class: "table table-compact" },
          h("tbody", {}, names.map((n) => h("tr", { "data-change": n }, h("td", {}, auditFieldLabel(n)), changeCell(entry, n, entry.changes[n].old), h("td", {}, "→"), changeCell(entry, n, entry.changes[n].new)))),
        ),
      )
    : null;
  return h(
    "tr",
    { "data-testid": "audit-row", "data-type": entry.resource_type, "data-action": entry.action },
    h("td", { "data-label": t("audit.col.time"), title: formatZoned(entry.time) }, formatRelative(entry.time)),
    h("td", { "data-label": t("audit.col.who") }, whoLabel(entry)),
    h("td", { "data-label": t("audit.col.action") }, badge(actionLabel(entry.action), "muted", { "data-action": entry.action })),
    h("td", { "data-label": t("audit.col.resource") }, h("span", { class: "stack-xs" }, typeLabel(entry.resource_type), h("span", { class: "muted small" }, `#${entry.resource_id}`))),
    h("td", { "data-label": t("audit.col.summary") }, h("div", {}, h("div", { class: "audit-sentence", "data-testid": "audit-sentence", title: entry.summary }, sentence(entry)), changes)),
  );
}
