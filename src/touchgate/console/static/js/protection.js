// Protection against over-messaging: the project's frequency cap (across touchpoints),
// each touchpoint's cap, quiet hours and request rate (a dialog, also opened from the
// touchpoint list), and the blocklist (list, add by pasting or uploading gids, remove).

import { ApiError, api, listAll } from "./api.js";
import { add, badge, busy, confirmDialog, field, h, modal, onTypingPause, replace, spinner, toast } from "./dom.js";
import { applyFieldErrors, clearFieldErrors, errorBox, errorText } from "./errors.js";
import { formatNumber, t } from "./i18n.js";
import { projectZone, timeEl, zoned } from "./time.js";

const PAGE = 20;
// gids per request when adding a large list (the API takes JSON arrays).
const CHUNK = 10_000;
const MAX_LINE_ERRORS = 20;

function typedNumber(raw) {
  const text = String(raw ?? "").trim();
  const n = Number(text);
  return text !== "" && Number.isFinite(n) ? n : text === "" ? null : text;
}

export function capText(cap) {
  if (!cap) return t("protection.no_cap");
  return cap.days === 1 ? t("protection.cap_summary_day", { n: cap.max_messages }) : t("protection.cap_summary", { n: cap.max_messages, days: cap.days });
}

/** One line per rule a touchpoint has, or a single "none". */
export function touchpointRules(p) {
  const lines = [];
  if (p.frequency_cap) lines.push(capText(p.frequency_cap));
  if (p.quiet_hours) lines.push(t(`protection.quiet_summary.${p.quiet_hours.action === "hold" ? "hold" : "drop"}`, { start: p.quiet_hours.start, end: p.quiet_hours.end }));
  if (p.rate_limit) lines.push(t("protection.rate_summary", { n: p.rate_limit.requests_per_second }));
  return lines.length ? lines : [t("protection.none")];
}

/** A rule that can be switched on and off: a checkbox heading and its inputs. */
function rule(title, on, testid, body, hint) {
  const box = h("input", { type: "checkbox", checked: on, "data-testid": testid });
  const wrap = h("div", { class: on ? "rule" : "rule off" }, h("label", { class: "rule-head check" }, box, title), h("div", { class: "rule-body" }, body, hint ? h("p", { class: "hint" }, hint) : null));
  box.addEventListener("change", () => wrap.classList.toggle("off", !box.checked));
  return { wrap, on: () => box.checked };
}

function capInputs(cap, prefix, path) {
  const max = h("input", { type: "number", min: 1, step: 1, value: cap ? cap.max_messages : 1, "data-field": `${path}.max_messages`, "data-testid": `${prefix}-max`, "aria-label": t("protection.max_messages") });
  const days = h("input", { type: "number", min: 1, step: 1, value: cap ? cap.days : 1, "data-field": `${path}.days`, "data-testid": `${prefix}-days`, "aria-label": t("protection.days") });
  const row = h("div", { class: "input-row", "data-field-wrap": path, "data-field": path }, t("protection.at_most"), max, t("protection.messages_in"), days, t("protection.days_unit"));
  return { row, value: () => ({ max_messages: typedNumber(max.value), days: typedNumber(days.value) }) };
}

/**
 * A save button: while `work()` runs it is busy; an error from the service is shown in
 * `errSlot` and each field error next to its input inside `root`.
 */
function saveButton(label, testid, root, errSlot, work, extraClass = "") {
  const button = h("button", { class: `btn btn-primary ${extraClass}`, type: "button", "data-testid": testid }, label);
  button.addEventListener(
    "click",
    busy(button, async () => {
      replace(errSlot);
      clearFieldErrors(root);
      try {
        await work();
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (err.fieldErrors.length) applyFieldErrors(root, err);
        errSlot.appendChild(errorBox(err, { testid: `${testid}-error` }));
      }
    }),
  );
  return button;
}

// ---- a touchpoint's protection (dialog) ----------------------------------------------------

export async function openTouchpointProtection(ctx, tp, onSaved) {
  const base = `/projects/${ctx.pid}/touchpoints/${tp.id}/protection`;
  // Closing with changes not saved asks first (where the console's dialogs support it).
  let dirty = () => false;
  const m = modal({ title: t("protection.tp_title", { name: tp.name }), size: "md", testid: "tp-protection-dialog", isDirty: () => dirty() });
  add(m.body, spinner());
  let current;
  try {
    current = await api.get(base);
  } catch (err) {
    replace(m.body, errorBox(err));
    add(m.footer, h("button", { class: "btn", type: "button", onClick: () => m.close() }, t("common.close")));
    return;
  }
  const cap = capInputs(current.frequency_cap, "tpp-cap", "frequency_cap");
  const capRule = rule(t("protection.tp_cap"), Boolean(current.frequency_cap), "tpp-cap-on", cap.row, t("protection.tp_cap_hint"));
  const quiet = current.quiet_hours || { start: "22:00", end: "08:00", action: "drop" };
  const start = h("input", { type: "time", value: quiet.start, "data-field": "quiet_hours.start", "data-testid": "tpp-quiet-start", "aria-label": t("protection.quiet_start") });
  const end = h("input", { type: "time", value: quiet.end, "data-field": "quiet_hours.end", "data-testid": "tpp-quiet-end", "aria-label": t("protection.quiet_end") });
  let action = quiet.action === "hold" ? "hold" : "drop";
  const actionHint = h("p", { class: "hint" });
  const showAction = () => (actionHint.textContent = t(`protection.quiet_${action}_hint`));
  showAction();
  const actions = h(
    "div",
    { class: "segmented segmented-sm", role: "radiogroup", "data-field": "quiet_hours.action" },
    ["drop", "hold"].map((v) =>
      h("label", { class: "seg" }, h("input", { type: "radio", name: `quiet-action-${tp.id}`, value: v, checked: action === v, "data-testid": `tpp-quiet-${v}`, onChange: () => { action = v; showAction(); } }), h("span", {}, t(`protection.quiet_${v}`))),
    ),
  );
  const quietRule = rule(
    t("protection.quiet_hours"),
    Boolean(current.quiet_hours),
    "tpp-quiet-on",
    [h("div", { class: "input-row", "data-field-wrap": "quiet_hours", "data-field": "quiet_hours" }, t("protection.quiet_from"), start, t("protection.quiet_to"), end), h("div", { class: "field" }, actions, actionHint)],
    t("protection.quiet_tz", { tz: ctx.project.timezone }),
  );
  const rate = h("input", { type: "number", min: 0, step: "any", value: current.rate_limit ? current.rate_limit.requests_per_second : 10, "data-field": "rate_limit.requests_per_second", "data-testid": "tpp-rate", "aria-label": t("protection.rate") });
  const rateRule = rule(t("protection.rate"), Boolean(current.rate_limit), "tpp-rate-on", h("div", { class: "input-row", "data-field-wrap": "rate_limit" }, rate, t("protection.per_second")), t("protection.rate_hint"));
  const errSlot = h("div");
  add(replace(m.body), h("p", { class: "muted small" }, t("protection.tp_intro")), errSlot, capRule.wrap, quietRule.wrap, rateRule.wrap);
  const body = () => ({
    frequency_cap: capRule.on() ? cap.value() : null,
    quiet_hours: quietRule.on() ? { start: start.value, end: end.value, action } : null,
    rate_limit: rateRule.on() ? { requests_per_second: typedNumber(rate.value) } : null,
  });
  const pristine = JSON.stringify(body());
  dirty = () => JSON.stringify(body()) !== pristine;
  const save = saveButton(t("common.save"), "tpp-save", m.body, errSlot, async () => {
    await api.put(base, body());
    dirty = () => false;
    m.close();
    toast(t("protection.saved"));
    if (onSaved) await onSaved();
  });
  add(m.footer, h("button", { class: "btn", type: "button", onClick: () => m.close() }, t("common.cancel")), save);
}

// ---- the page ------------------------------------------------------------------------------

export async function renderProtection(ctx) {
  const { view, pid } = ctx;
  const touchpoints = await listAll(`/projects/${pid}/touchpoints`);
  if (!ctx.isCurrent()) return;
  const capCard = h("section", { class: "card", "data-testid": "project-cap" }, spinner());
  const tpCard = h("section", { class: "card", "data-testid": "tp-protection-list" }, spinner());
  replace(
    view,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, t("protection.title")), h("p", { class: "muted" }, t("protection.subtitle")))),
    h("div", { class: "protection-grid" }, capCard, tpCard),
    blocklistCard(ctx, touchpoints),
  );
  loadProjectCap(ctx, capCard);
  loadTouchpointRules(ctx, tpCard, touchpoints);
}

async function loadProjectCap(ctx, card) {
  const path = `/projects/${ctx.pid}/protection`;
  const head = [h("h3", {}, t("protection.project_cap")), h("p", { class: "muted small" }, t("protection.project_cap_intro"))];
  let current;
  try {
    current = await api.get(path);
  } catch (err) {
    replace(card, head, errorBox(err));
    return;
  }
  if (!ctx.admin) {
    // Read-only: the cap is set with an admin key.
    replace(card, head, h("p", { "data-testid": "project-cap-summary" }, capText(current.frequency_cap)));
    return;
  }
  const cap = capInputs(current.frequency_cap, "project-cap", "frequency_cap");
  const capRule = rule(t("protection.project_cap_on"), Boolean(current.frequency_cap), "project-cap-on", cap.row, t("protection.counting"));
  const errSlot = h("div");
  const save = saveButton(t("common.save"), "project-cap-save", card, errSlot, async () => {
    await api.put(path, { frequency_cap: capRule.on() ? cap.value() : null });
    toast(t("protection.saved"));
  }, "btn-sm");
  replace(card, head, capRule.wrap, errSlot, h("div", { class: "form-row-end" }, save));
}

async function loadTouchpointRules(ctx, card, touchpoints) {
  const head = [h("h3", {}, t("protection.touchpoints")), h("p", { class: "muted small" }, t("protection.touchpoints_intro"))];
  if (!touchpoints.length) {
    replace(card, head, h("p", { class: "muted" }, t("protection.no_touchpoints")));
    return;
  }
  const results = await Promise.allSettled(touchpoints.map((tp) => api.get(`/projects/${ctx.pid}/touchpoints/${tp.id}/protection`)));
  if (!ctx.isCurrent()) return;
  const reload = () => loadTouchpointRules(ctx, card, touchpoints);
  replace(
    card,
    head,
    h(
      "table",
      { class: "table table-compact" },
      h(
        "tbody",
        {},
        touchpoints.map((tp, i) => {
          const r = results[i];
          const edit = h("button", { class: "btn btn-sm btn-ghost", type: "button", "data-testid": "tp-protection-edit" }, t("protection.edit"));
          edit.addEventListener("click", busy(edit, () => openTouchpointProtection(ctx, tp, reload)));
          return h(
            "tr",
            { "data-testid": "tp-protection-row", "data-name": tp.name },
            h("td", {}, h("div", { class: "strong" }, tp.name), tp.status === "enabled" ? null : badge(t("tp.status.disabled"), "muted")),
            h("td", { class: "small", "data-testid": "tp-protection-summary" }, r.status === "fulfilled" ? h("ul", { class: "summary-list" }, touchpointRules(r.value).map((line) => h("li", {}, line))) : h("span", { class: "muted" }, "—")),
            ctx.admin ? h("td", { class: "col-actions" }, edit) : null,
          );
        }),
      ),
    ),
  );
}

// ---- the blocklist -------------------------------------------------------------------------

function blocklistCard(ctx, touchpoints) {
  const { pid } = ctx;
  const names = new Map(touchpoints.map((tp) => [tp.id, tp.name]));
  const state = { gid: "", touchpoint: "", offset: 0 };
  const body = h("div", {}, spinner());
  const gidInput = h("input", { type: "number", min: 1, placeholder: "gid", "aria-label": "gid", "data-testid": "bl-filter-gid" });
  const tpSelect = h(
    "select",
    { "aria-label": t("campaign.delivery.touchpoint"), "data-testid": "bl-filter-tp" },
    h("option", { value: "" }, t("blocklist.any_touchpoint")),
    h("option", { value: "all" }, t("blocklist.every_touchpoint_entries")),
    touchpoints.map((tp) => h("option", { value: tp.id }, tp.name)),
  );
  const addBtn = h("button", { class: "btn btn-primary btn-sm", type: "button", "data-testid": "bl-add" }, "+ ", t("blocklist.add"));
  const load = async () => {
    try {
      const page = await api.get(`/projects/${pid}/blocklist`, { gid: state.gid, touchpoint_id: state.touchpoint, limit: PAGE, offset: state.offset });
      const items = page.items || [];
      const total = page.total ?? items.length;
      replace(
        body,
        items.length
          ? h(
              "table",
              { class: "table table-compact table-stack", "data-testid": "bl-table" },
              h("thead", {}, h("tr", {}, ["gid", "touchpoint", "reason", "added", ctx.writer ? "" : null].filter((c) => c !== null).map((c) => h("th", {}, c ? t(`blocklist.col.${c}`) : "", c === "added" ? h("div", { class: "th-note" }, projectZone()) : null)))),
              h(
                "tbody",
                {},
                items.map((entry) => {
                  const remove = h("button", { class: "btn btn-sm btn-danger-ghost", type: "button", "data-testid": "bl-remove" }, t("blocklist.remove"));
                  remove.addEventListener("click", busy(remove, () => removeEntry(entry)));
                  return h(
                    "tr",
                    { "data-testid": "bl-row", "data-gid": entry.gid },
                    h("td", { class: "col-name" }, String(entry.gid)),
                    h("td", { "data-label": t("blocklist.col.touchpoint") }, entry.touchpoint_id === null || entry.touchpoint_id === undefined ? badge(t("blocklist.all_touchpoints"), "info") : names.get(entry.touchpoint_id) || `#${entry.touchpoint_id}`),
                    h("td", { class: "small", "data-label": t("blocklist.col.reason") }, entry.reason || "—"),
                    h("td", { class: "small muted", "data-label": zoned(t("blocklist.col.added")) }, timeEl(entry.created_at, { label: false })),
                    ctx.writer ? h("td", { class: "col-actions" }, remove) : null,
                  );
                }),
              ),
            )
          : h("p", { class: "muted small card-pad" }, state.gid || state.touchpoint ? t("blocklist.none_match") : t("blocklist.empty")),
        h(
          "div",
          { class: "pager" },
          h("span", { class: "muted small" }, t("campaign.page_info", { from: total ? state.offset + 1 : 0, to: state.offset + items.length, total: formatNumber(total) })),
          h("button", { class: "btn btn-sm", type: "button", disabled: state.offset === 0, onClick: () => { state.offset = Math.max(0, state.offset - PAGE); load(); } }, t("campaign.prev")),
          h("button", { class: "btn btn-sm", type: "button", disabled: state.offset + PAGE >= total, onClick: () => { state.offset += PAGE; load(); } }, t("campaign.next")),
        ),
      );
    } catch (err) {
      replace(body, errorBox(err, { testid: "bl-error" }));
    }
  };
  const removeEntry = async (entry) => {
    const scope = entry.touchpoint_id === null || entry.touchpoint_id === undefined ? t("blocklist.all_touchpoints") : names.get(entry.touchpoint_id) || `#${entry.touchpoint_id}`;
    const ok = await confirmDialog(t("blocklist.remove_title"), t("blocklist.remove_text", { gid: entry.gid, scope }), { danger: true, okLabel: t("blocklist.remove") });
    if (!ok) return;
    try {
      await deleteEntry(pid, entry);
      toast(t("blocklist.removed", { gid: entry.gid }));
    } catch (err) {
      toast(errorText(err), "error");
    }
    await load();
  };
  onTypingPause(gidInput, () => {
    state.gid = gidInput.value.trim();
    state.offset = 0;
    load();
  });
  tpSelect.addEventListener("change", () => {
    state.touchpoint = tpSelect.value;
    state.offset = 0;
    load();
  });
  addBtn.addEventListener("click", () => openAddDialog(ctx, touchpoints, load));
  load();
  return h(
    "section",
    { class: "card", "data-testid": "blocklist" },
    h("div", { class: "card-pad toolbar" }, h("h3", { class: "spacer" }, t("blocklist.title")), gidInput, tpSelect, ctx.writer ? addBtn : null),
    h("p", { class: "muted small card-pad" }, t("blocklist.intro")),
    body,
  );
}

function deleteEntry(pid, entry) {
  // Exactly this entry: "all" names the entry for every touchpoint (a gid alone would
  // remove the gid's entries for single touchpoints too).
  const every = entry.touchpoint_id === null || entry.touchpoint_id === undefined;
  const query = new URLSearchParams({ gid: String(entry.gid), touchpoint_id: every ? "all" : String(entry.touchpoint_id) });
  return api.del(`/projects/${pid}/blocklist?${query}`);
}

/**
 * gids from pasted text or a file: CSV (a "gid" column, or the first one), JSON Lines
 * ({"gid": …} a line) or plain numbers. Returns {gids, errors: [{line, text}], duplicates}.
 */
export function parseGidList(text) {
  const lines = String(text).split(/\r?\n/);
  const seen = new Set();
  const gids = [];
  const errors = [];
  let duplicates = 0;
  let column = 0;
  const first = lines.find((l) => l.trim());
  const header = first && /[A-Za-z]/.test(first) && !first.trim().startsWith("{") ? first.split(",").map((c) => c.trim().replace(/^"|"$/g, "").toLowerCase()) : null;
  if (header) column = Math.max(0, header.indexOf("gid"));
  const take = (token, line) => {
    const raw = String(token).trim().replace(/^"|"$/g, "");
    if (!raw) return;
    if (!/^\d+$/.test(raw) || raw === "0" || !Number.isSafeInteger(Number(raw))) {
      errors.push({ line, text: raw.slice(0, 40) });
      return;
    }
    const gid = Number(raw);
    if (seen.has(gid)) duplicates++;
    else {
      seen.add(gid);
      gids.push(gid);
    }
  };
  lines.forEach((text, i) => {
    const line = i + 1;
    const trimmed = text.trim();
    if (!trimmed || (header && text === first)) return;
    if (trimmed.startsWith("{")) {
      try {
        const obj = JSON.parse(trimmed);
        take(obj && obj.gid !== undefined ? String(obj.gid) : "", line);
        if (!obj || obj.gid === undefined) errors.push({ line, text: trimmed.slice(0, 40) });
      } catch {
        errors.push({ line, text: trimmed.slice(0, 40) });
      }
    } else if (header) take(trimmed.split(",")[column] ?? "", line);
    else trimmed.split(/[\s,，;]+/).forEach((token) => take(token, line));
  });
  return { gids, errors, duplicates };
}

function openAddDialog(ctx, touchpoints, onDone) {
  const m = modal({ title: t("blocklist.add_title"), size: "md", testid: "bl-dialog", isDirty: () => Boolean(paste.value.trim() || fileText) });
  let source = "paste";
  let fileText = "";
  const paste = h("textarea", { class: "mono paste-area", rows: 6, placeholder: "1001\n1002, 1003", "data-field": "gids", "data-testid": "bl-paste" });
  const file = h("input", { type: "file", accept: ".csv,.ndjson,.jsonl,.txt,text/csv,application/x-ndjson,text/plain", "data-testid": "bl-file", "aria-label": t("blocklist.file") });
  const parsed = h("div", { class: "small parsed", "data-testid": "bl-parsed", "aria-live": "polite" });
  const sourceSlot = h("div");
  const current = () => parseGidList(source === "paste" ? paste.value : fileText);
  const showParsed = () => {
    const { gids, errors, duplicates } = current();
    replace(
      parsed,
      h("div", { class: gids.length ? "strong" : "muted" }, t("blocklist.ready", { n: formatNumber(gids.length) }), duplicates ? ` ${t("blocklist.duplicates", { n: formatNumber(duplicates) })}` : ""),
      errors.length
        ? h(
            "div",
            { class: "field-error", "data-testid": "bl-parse-errors" },
            t("blocklist.bad_lines", { n: formatNumber(errors.length) }),
            h("ul", { class: "alert-list" }, errors.slice(0, MAX_LINE_ERRORS).map((e) => h("li", {}, t("blocklist.bad_line", { line: e.line, text: e.text })))),
          )
        : null,
    );
  };
  paste.addEventListener("input", showParsed);
  file.addEventListener("change", async () => {
    const f = file.files && file.files[0];
    fileText = f ? await f.text() : "";
    showParsed();
  });
  const showSource = () => {
    replace(sourceSlot, source === "paste" ? field(t("blocklist.paste"), paste, { hint: t("blocklist.paste_hint") }) : field(t("blocklist.file"), file, { hint: t("blocklist.file_hint") }));
    showParsed();
  };
  const sourcePick = h(
    "div",
    { class: "segmented segmented-sm", role: "radiogroup" },
    ["paste", "file"].map((v) =>
      h("label", { class: "seg" }, h("input", { type: "radio", name: "bl-source", value: v, checked: source === v, "data-testid": `bl-source-${v}`, onChange: () => { source = v; showSource(); } }), h("span", {}, t(`blocklist.source_${v}`))),
    ),
  );
  let scope = "all";
  const chosen = new Set();
  const tpList = h(
    "div",
    { class: "check-list", "data-field": "touchpoint_ids", hidden: true },
    touchpoints.map((tp) => h("label", { class: "check" }, h("input", { type: "checkbox", value: tp.id, "data-testid": `bl-tp-${tp.id}`, onChange: (e) => (e.target.checked ? chosen.add(tp.id) : chosen.delete(tp.id)) }), tp.name)),
  );
  const scopePick = h(
    "div",
    { class: "segmented segmented-sm", role: "radiogroup" },
    ["all", "some"].map((v) =>
      h("label", { class: "seg" }, h("input", { type: "radio", name: "bl-scope", value: v, checked: scope === v, "data-testid": `bl-scope-${v}`, onChange: () => { scope = v; tpList.hidden = v === "all"; } }), h("span", {}, t(`blocklist.scope_${v}`))),
    ),
  );
  const reason = h("input", { type: "text", maxlength: 200, "data-field": "reason", "data-testid": "bl-reason", placeholder: t("blocklist.reason_placeholder") });
  const progress = h("div");
  const errSlot = h("div");
  add(
    m.body,
    field(t("blocklist.source"), sourcePick),
    sourceSlot,
    parsed,
    field(t("blocklist.scope"), h("div", {}, scopePick, tpList)),
    field(t("blocklist.reason"), reason),
    progress,
    errSlot,
  );
  showSource();
  const submit = h("button", { class: "btn btn-primary", type: "button", "data-testid": "bl-submit" }, t("blocklist.add"));
  submit.addEventListener(
    "click",
    busy(submit, async () => {
      replace(errSlot);
      clearFieldErrors(m.body);
      const { gids } = current();
      if (!gids.length) {
        errSlot.appendChild(h("div", { class: "alert alert-error", role: "alert" }, t("blocklist.nothing")));
        return;
      }
      const touchpointIds = scope === "all" ? null : touchpoints.filter((tp) => chosen.has(tp.id)).map((tp) => tp.id);
      let added = 0;
      for (let i = 0; i < gids.length; i += CHUNK) {
        replace(progress, h("progress", { class: "progress", max: gids.length, value: i, "aria-label": t("blocklist.adding") }));
        try {
          const out = await api.post(`/projects/${ctx.pid}/blocklist`, { gids: gids.slice(i, i + CHUNK), touchpoint_ids: touchpointIds, ...(reason.value.trim() ? { reason: reason.value.trim() } : {}) });
          added += out && Number.isInteger(out.added) ? out.added : 0;
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          replace(progress);
          if (err.fieldErrors.length) applyFieldErrors(m.body, err);
          errSlot.appendChild(errorBox(err, { testid: "bl-add-error" }));
          if (i) errSlot.appendChild(h("p", { class: "small" }, t("blocklist.partly", { n: formatNumber(i) })));
          await onDone();
          return;
        }
      }
      // Added: nothing is left to lose by closing.
      paste.value = "";
      fileText = "";
      m.close();
      toast(t("blocklist.added", { n: formatNumber(added), total: formatNumber(gids.length) }));
      await onDone();
    }),
  );
  add(m.footer, h("button", { class: "btn", type: "button", onClick: () => m.close() }, t("common.cancel")), submit);
}

