// The campaign editor: name and protection, the trigger, the audience, and the strategy
// drawn on the canvas (canvas.js). Everything edits the campaign's JSON content in place,
// so the JSON view (the advanced view) and the canvas show one document, and a campaign
// opened and saved without an edit is saved byte for byte as it was loaded.

import { ApiError, api, listAll } from "./api.js";
import { createCanvas } from "./canvas.js";
import { breadcrumb, busy, charCounter, field, h, replace, toast } from "./dom.js";
import { applyFieldErrors, clearFieldErrors, formError, normalizePath } from "./errors.js";
import { filterEditor } from "./filters.js";
import { formatNumber, formatRelative, t } from "./i18n.js";
import { zoned } from "./time.js";
import { newStep } from "./strategy.js";

const NAME_MAX = 20;
const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WINDOW_UNITS = [
  ["days", 1440],
  ["hours", 60],
  ["minutes", 1],
];
const MAX_WINDOW_MINUTES = 7 * 1440;

function wallTime(iso) {
  // Stored times carry the project's offset; their wall-clock part is what the user typed.
  return iso ? String(iso).slice(0, 16) : "";
}

function emptyContent() {
  const doc = { trigger: { type: "once" }, audience: { match: "all" }, participation: { mode: "once" }, anti_disturb: true, strategy: null };
  doc.strategy = newStep(doc, "send");
  return doc;
}

function contentOf(campaign) {
  // The same keys in the same order as the API's campaign body.
  const c = structuredClone(campaign);
  return { trigger: c.trigger, audience: c.audience, participation: c.participation, anti_disturb: c.anti_disturb, strategy: c.strategy };
}

function windowParts(minutes) {
  if (!Number.isInteger(minutes) || minutes <= 0) return [minutes ?? "", 1];
  for (const [, factor] of WINDOW_UNITS) if (minutes % factor === 0) return [minutes / factor, factor];
  return [minutes, 1];
}

function radios(name, value, options, onPick, path) {
  return h(
    "div",
    { class: "segmented", "data-field": path || null, role: "radiogroup" },
    options.map(([v, label]) =>
      h("label", { class: "seg" }, h("input", { type: "radio", name, value: v, checked: value === v, "data-testid": `${name}-${v}`, onChange: () => onPick(v) }), h("span", {}, label)),
    ),
  );
}

/** A number typed into an input: a number when it is one, else the text (the service names it). */
function typedNumber(raw) {
  const text = String(raw ?? "").trim();
  const n = Number(text);
  return text !== "" && Number.isFinite(n) ? n : text === "" ? null : text;
}

/** Where a JSON.parse error points ({line, column}, from 1), from the browser's message. */
export function jsonPlace(text, message) {
  const m = String(message).match(/position (\d+)/);
  const at = m ? Math.min(Number(m[1]), text.length) : text.length;
  const before = text.slice(0, at).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

function parseGids(text) {
  return String(text)
    .split(/[\s,，;]+/)
    .filter((g) => g && g.toLowerCase() !== "gid")
    .map((g) => (/^\d+$/.test(g) ? Number(g) : g));
}

export async function renderCampaignForm(ctx, campaign) {
  const { view, pid, sid, navigate } = ctx;
  const editing = Boolean(campaign);
  const [touchpoints, attributes, eventNames, protection] = await Promise.all([
    listAll(`/projects/${pid}/touchpoints`).catch(() => listAll(`/projects/${pid}/spaces/${sid}/touchpoints`)),
    listAll(`/projects/${pid}/attributes`).catch(() => []),
    api.get(`/projects/${pid}/event-names`).then((d) => d.items).catch(() => []),
    // The project-wide cap explains the protection switch; absent on an older service.
    api.get(`/projects/${pid}/protection`).catch(() => null),
  ]);
  if (!ctx.isCurrent()) return;
  const tz = ctx.project.timezone;
  let name = campaign ? campaign.name : "";
  let doc = campaign ? contentOf(campaign) : emptyContent();
  let jsonMode = false;
  const topErrors = h("div", { "data-testid": "campaign-form-errors" });
  const formTop = h("div", { class: "editor" });
  const strategyCard = h("section", { class: "card canvas-card", "data-testid": "strategy-card" });
  const jsonCard = h("section", { class: "card" });
  const jsonArea = h("textarea", { class: "json-editor", rows: 24, spellcheck: "false", "data-field": "body", "data-testid": "campaign-json", "aria-label": t("campaign.form.json_title") });

  // Fetched once per editor: enum options per touchpoint parameter, properties per event.
  const optionsCache = new Map();
  const loadOptions = (tid, key) => {
    const k = `${tid}:${key}`;
    if (!optionsCache.has(k)) {
      const p = api.get(`/projects/${pid}/touchpoints/${tid}/params/${encodeURIComponent(key)}/options`);
      p.catch(() => optionsCache.delete(k));
      optionsCache.set(k, p);
    }
    return optionsCache.get(k);
  };
  const propertyCache = new Map();
  const eventProperties = (event) => {
    if (!propertyCache.has(event)) {
      propertyCache.set(event, api.get(`/projects/${pid}/event-properties`, { event }).then((d) => d.items).catch(() => []));
    }
    return propertyCache.get(event);
  };
  const eventList = h("datalist", { id: "event-names" }, eventNames.map((e) => h("option", { value: e.name }, t("canvas.event_seen", { when: formatRelative(e.last_seen_at) }))));

  // ---- basics ------------------------------------------------------------------------------
  const capText = () => {
    const cap = protection && protection.frequency_cap;
    if (!protection) return t("protection.explain.cap_unknown");
    if (!cap) return t("protection.explain.no_project_cap");
    return cap.days === 1 ? t("protection.explain.project_cap_day", { n: cap.max_messages }) : t("protection.explain.project_cap", { n: cap.max_messages, days: cap.days });
  };
  const basics = () => {
    const counter = charCounter(NAME_MAX, "campaign-name-count");
    const count = () => counter.update(name);
    count();
    const nameInput = h("input", { type: "text", value: name, "data-field": "name", "data-testid": "campaign-name-input", placeholder: t("campaign.form.name_placeholder"), onInput: (e) => { name = e.target.value; count(); } });
    const explain = h("div", { class: "hint", "data-testid": "anti-disturb-explain" });
    const showExplain = () =>
      replace(
        explain,
        doc.anti_disturb === false ? t("protection.explain.off") : t("protection.explain.on", { cap: capText() }),
        " ",
        t("protection.explain.blocklist"),
        " ",
        h("a", { href: `#/p/${pid}/protection`, "data-testid": "protection-link" }, t("protection.explain.settings")),
      );
    showExplain();
    return h(
      "section",
      { class: "card" },
      h("h3", {}, t("campaign.form.basics")),
      h(
        "div",
        { class: "grid-2" },
        field(t("campaign.form.name"), h("div", { class: "with-counter" }, nameInput, counter.el), { required: true, hint: t("campaign.form.name_hint") }),
        jsonMode
          ? h("div")
          : field(
              t("campaign.form.anti_disturb"),
              h(
                "label",
                { class: "check" },
                h("input", {
                  type: "checkbox",
                  checked: doc.anti_disturb !== false,
                  "data-field": "anti_disturb",
                  "data-testid": "campaign-anti-disturb",
                  onChange: (e) => {
                    doc.anti_disturb = e.target.checked;
                    showExplain();
                  },
                }),
                t("campaign.form.anti_disturb_label"),
              ),
              { extra: explain },
            ),
      ),
    );
  };

  // ---- trigger -------------------------------------------------------------------------------
  const triggerCard = h("section", { class: "card", "data-field": "trigger", "data-field-wrap": "trigger", "data-testid": "trigger-card" });
  // What each trigger type held, so switching back and forth loses nothing.
  const triggers = new Map();
  const stash = new Map();
  const setTrigger = (type) => {
    triggers.set(doc.trigger.type, doc.trigger);
    doc.trigger = triggers.get(type) || newTrigger(type);
    renderTrigger();
    canvas.render();
  };
  const newTrigger = (type) => {
    if (type === "recurring") return { type, every: "daily", time: "10:00" };
    if (type === "event") return { type, event: "" };
    if (type === "event_without") return { type, event: "", without: "", within_minutes: 1440 };
    return { type: "once" };
  };
  /** Set or clear one key (an empty value removes it, so an unused field is not sent). */
  const put = (obj, key, value) => {
    if (value === "" || value === undefined) delete obj[key];
    else obj[key] = value;
  };
  const dateTime = (tr, key, label) =>
    field(label, h("input", { type: "datetime-local", value: wallTime(tr[key]), "data-field": `trigger.${key}`, "data-testid": `trigger-${key}`, onInput: (e) => put(tr, key, e.target.value) }), { hint: t("campaign.form.tz_hint", { tz }) });
  const swap = (tr, from, to) => {
    // Keys one mode uses and the other does not, kept aside while the other is chosen.
    const saved = stash.get(tr) || {};
    for (const key of from) if (key in tr) (saved[key] = tr[key]), delete tr[key];
    for (const key of to) if (key in saved) (tr[key] = saved[key]), delete saved[key];
    stash.set(tr, saved);
  };
  const eventInput = (tr, key, label, testid) =>
    field(
      label,
      h("input", {
        type: "text",
        list: "event-names",
        value: tr[key] ?? "",
        placeholder: t("canvas.event_placeholder"),
        "data-field": `trigger.${key}`,
        "data-testid": testid,
        onInput: (e) => (tr[key] = e.target.value.trim()),
        // The entry node names the event, and event splits need an event trigger.
        onChange: () => canvas.render(),
      }),
      { required: true, hint: eventNames.length ? t("canvas.event_hint", { n: eventNames.length }) : t("canvas.event_hint_none") },
    );

  const renderTrigger = () => {
    const tr = doc.trigger && typeof doc.trigger === "object" ? doc.trigger : (doc.trigger = { type: "once" });
    let detail;
    if (tr.type === "once") {
      const mode = "at" in tr ? "at" : "now";
      detail = [
        field(
          t("campaign.form.when"),
          radios("once-mode", mode, [["now", t("campaign.form.once_now")], ["at", t("campaign.form.once_at")]], (v) => {
            if (v === "now") swap(tr, ["at"], []);
            else {
              swap(tr, [], ["at"]);
              if (!("at" in tr)) tr.at = "";
            }
            renderTrigger();
          }),
        ),
        mode === "at"
          ? h("div", { class: "grid-2" }, field(t("campaign.form.at"), h("input", { type: "datetime-local", value: wallTime(tr.at), "data-field": "trigger.at", "data-testid": "trigger-at", onInput: (e) => (tr.at = e.target.value) }), { hint: t("campaign.form.tz_hint", { tz }) }))
          : null,
      ];
    } else if (tr.type === "recurring") {
      const cron = "cron" in tr;
      const wd = typeof tr.weekday === "number" ? WEEKDAYS[(tr.weekday + 6) % 7] : tr.weekday || "mon";
      detail = [
        field(
          t("campaign.form.repeat"),
          radios("recur-mode", cron ? "cron" : "every", [["every", t("campaign.form.simple")], ["cron", t("campaign.form.cron")]], (v) => {
            const simple = ["every", "time", "weekday", "day"];
            if (v === "cron") {
              swap(tr, simple, ["cron"]);
              if (!("cron" in tr)) tr.cron = "";
            } else {
              swap(tr, ["cron"], simple);
              if (!("every" in tr)) Object.assign(tr, { every: "daily", time: "10:00" });
            }
            renderTrigger();
          }),
        ),
        cron
          ? field(t("campaign.form.cron"), h("input", { type: "text", value: tr.cron, placeholder: "0 10 * * *", class: "mono", "data-field": "trigger.cron", "data-testid": "trigger-cron", onInput: (e) => (tr.cron = e.target.value.trim()) }), { hint: t("campaign.form.cron_hint") })
          : h(
              "div",
              { class: "grid-3" },
              field(
                t("campaign.form.every"),
                h(
                  "select",
                  {
                    "data-field": "trigger.every",
                    "data-testid": "trigger-every",
                    onChange: (e) => {
                      tr.every = e.target.value;
                      // A weekday belongs to a weekly cadence, a day of the month to a monthly one.
                      const own = tr.every === "weekly" ? ["weekday"] : tr.every === "monthly" ? ["day"] : [];
                      swap(tr, ["weekday", "day"].filter((k) => !own.includes(k)), own);
                      if (tr.every === "weekly" && !("weekday" in tr)) tr.weekday = "mon";
                      if (tr.every === "monthly" && !("day" in tr)) tr.day = 1;
                      renderTrigger();
                    },
                  },
                  ["daily", "weekly", "monthly"].map((v) => h("option", { value: v, selected: tr.every === v }, t(`campaign.trigger.every.${v}`))),
                ),
              ),
              tr.every === "weekly"
                ? field(t("campaign.form.weekday"), h("select", { "data-field": "trigger.weekday", "data-testid": "trigger-weekday", onChange: (e) => (tr.weekday = e.target.value) }, WEEKDAYS.map((d) => h("option", { value: d, selected: wd === d }, t(`campaign.weekday.${d}`)))))
                : tr.every === "monthly"
                  ? field(t("campaign.form.day"), h("input", { type: "number", min: 1, max: 31, value: tr.day ?? 1, "data-field": "trigger.day", "data-testid": "trigger-day", onInput: (e) => (tr.day = typedNumber(e.target.value)) }))
                  : h("div"),
              field(t("campaign.form.time"), h("input", { type: "time", value: tr.time ?? "", "data-field": "trigger.time", "data-testid": "trigger-time", onInput: (e) => put(tr, "time", e.target.value) })),
            ),
        h("div", { class: "grid-2" }, dateTime(tr, "start", t("campaign.form.start")), dateTime(tr, "end", t("campaign.form.end"))),
      ];
    } else if (tr.type === "event" || tr.type === "event_without") {
      const without = tr.type === "event_without";
      let windowField = null;
      if (without) {
        const [amount, factor] = windowParts(tr.within_minutes);
        const amountInput = h("input", { type: "number", min: 1, step: 1, value: String(amount), "data-field": "trigger.within_minutes", "data-testid": "trigger-window", "aria-label": t("canvas.window_amount") });
        const unit = h("select", { class: "select-sm", "data-testid": "trigger-window-unit", "aria-label": t("canvas.delay.unit") }, WINDOW_UNITS.map(([u, f]) => h("option", { value: f, selected: f === factor }, t(`canvas.unit.${u}`))));
        const update = () => {
          const n = typedNumber(amountInput.value);
          tr.within_minutes = typeof n === "number" ? Math.round(n * Number(unit.value) * 1000) / 1000 : n;
        };
        amountInput.addEventListener("input", update);
        unit.addEventListener("change", update);
        windowField = field(t("canvas.window"), h("div", { class: "input-row" }, amountInput, unit), { required: true, hint: t("canvas.window_hint", { max: formatNumber(MAX_WINDOW_MINUTES / 1440) }) });
      }
      detail = [
        h(
          "div",
          { class: "grid-2" },
          eventInput(tr, "event", without ? t("canvas.event_first") : t("canvas.event"), "trigger-event"),
          without ? eventInput(tr, "without", t("canvas.event_without"), "trigger-without") : h("div"),
        ),
        windowField,
        field(
          without ? t("canvas.event_filter_first") : t("canvas.event_filter"),
          filterEditor({
            get: () => tr.filter,
            set: (f) => put(tr, "filter", f ?? undefined),
            path: "trigger.filter",
            kind: "property",
            optional: true,
            suggest: () => (tr.event ? eventProperties(tr.event) : Promise.resolve([])),
            testid: "trigger-filter",
          }),
        ),
        h("div", { class: "grid-2" }, dateTime(tr, "start", t("canvas.active_from")), dateTime(tr, "end", t("canvas.active_until"))),
        h("p", { class: "muted small" }, t(without ? "canvas.event_without_explain" : "canvas.event_explain")),
      ];
    } else {
      detail = h("div", { class: "alert alert-warn" }, t("canvas.unknown_trigger", { type: String(tr.type) }));
    }
    replace(
      triggerCard,
      h("h3", {}, t("campaign.form.trigger")),
      field(
        t("campaign.form.trigger_type"),
        radios(
          "trigger-type",
          tr.type,
          [
            ["once", t("campaign.trigger.type.once")],
            ["recurring", t("campaign.trigger.type.recurring")],
            ["event", t("campaign.trigger.type.event")],
            ["event_without", t("campaign.trigger.type.event_without")],
          ],
          setTrigger,
          "trigger.type",
        ),
      ),
      detail,
      eventList,
    );
  };

  // ---- audience ----------------------------------------------------------------------------
  const audienceCard = h("section", { class: "card", "data-field": "audience", "data-field-wrap": "audience", "data-testid": "audience-card" });
  const audiences = new Map();
  const renderAudience = () => {
    const a = doc.audience && typeof doc.audience === "object" ? doc.audience : (doc.audience = { match: "all" });
    const part = doc.participation && typeof doc.participation === "object" ? doc.participation : (doc.participation = { mode: "once" });
    const setMatch = (match) => {
      audiences.set(a.match, a);
      doc.audience = audiences.get(match) || (match === "filter" ? { match, filter: { op: "and", conditions: [{ attribute: "", operator: "eq", value: "" }] } } : { match });
      renderAudience();
      canvas.render();
    };
    let detail = null;
    if (a.match === "filter") {
      detail = filterEditor({ get: () => a.filter, set: (f) => (a.filter = f), path: "audience.filter", kind: "attribute", attributes, testid: "audience-filter" });
    } else if (a.match === "list") {
      const gids = h("textarea", {
        rows: 4,
        class: "mono",
        "data-field": "audience.gids",
        "data-testid": "audience-gids",
        placeholder: "1001\n1002",
        onInput: (e) => {
          const list = parseGids(e.target.value);
          if (list.length) a.gids = list;
          else delete a.gids;
        },
      });
      gids.value = Array.isArray(a.gids) ? a.gids.join("\n") : "";
      const file = h("input", {
        type: "file",
        accept: ".csv,.txt,.ndjson,.jsonl,text/csv,text/plain",
        "data-testid": "audience-gids-file",
        "aria-label": t("canvas.gids_file"),
        onChange: async (e) => {
          const f = e.target.files && e.target.files[0];
          if (!f) return;
          gids.value = (await f.text()).replace(/\{\s*"gid"\s*:\s*(\d+)[^}]*\}/g, "$1");
          gids.dispatchEvent(new Event("input"));
        },
      });
      detail = [
        Number.isInteger(a.gid_count) ? h("div", { class: "alert alert-info", "data-testid": "gid-count" }, t("canvas.gid_count", { n: formatNumber(a.gid_count) })) : null,
        field(t("campaign.form.gids"), gids, { hint: Number.isInteger(a.gid_count) ? t("canvas.gids_replace_hint") : t("campaign.form.gids_hint"), extra: h("div", { class: "file-row small muted" }, t("canvas.gids_file"), " ", file) }),
      ];
    }
    replace(
      audienceCard,
      h("h3", {}, t("campaign.form.audience")),
      field(t("campaign.form.match"), radios("audience-match", a.match, [["all", t("campaign.audience.all")], ["filter", t("campaign.audience.filter")], ["list", t("campaign.audience.list")]], setMatch, "audience.match")),
      detail,
      h(
        "div",
        { class: "grid-2" },
        field(
          t("campaign.form.participation"),
          radios(
            "participation",
            part.mode,
            [["once", t("campaign.participation.once")], ["every", t("campaign.participation.every")]],
            (v) => {
              swap(part, v === "once" ? ["days"] : [], v === "every" ? ["days"] : []);
              part.mode = v;
              if (v === "every" && !("days" in part)) part.days = 7;
              renderAudience();
            },
            "participation.mode",
          ),
        ),
        part.mode === "every"
          ? field(t("campaign.form.days"), h("input", { type: "number", min: 1, value: part.days ?? "", "data-field": "participation.days", "data-testid": "participation-days", onInput: (e) => (part.days = typedNumber(e.target.value)) }))
          : h("div"),
      ),
    );
  };

  // ---- strategy ----------------------------------------------------------------------------
  const entryLines = () => {
    const tr = doc.trigger || {};
    let when;
    if (tr.type === "event") when = t("canvas.entry.event", { event: tr.event || "…" });
    else if (tr.type === "event_without") when = t("canvas.entry.event_without", { event: tr.event || "…", without: tr.without || "…" });
    else if (tr.type === "recurring") when = tr.cron ? t("campaign.trigger.cron_summary", { cron: tr.cron }) : t(`campaign.trigger.every.${tr.every || "daily"}`);
    else when = tr.at ? t("campaign.trigger.once_at", { at: zoned(wallTime(tr.at).replace("T", " ")) }) : t("campaign.trigger.once_now");
    const a = doc.audience || {};
    const who = a.match === "filter" ? t("canvas.entry.filtered") : a.match === "list" ? t("campaign.audience.list") : t("campaign.audience.all");
    return [when, who];
  };
  let canvas;
  const buildCanvas = () => {
    canvas = createCanvas({
      doc,
      sid,
      touchpoints,
      attributes,
      loadOptions,
      eventProperties,
      entry: entryLines,
      onEntry: () => {
        triggerCard.scrollIntoView({ block: "start", behavior: "smooth" });
        triggerCard.querySelector("input:checked, input, select")?.focus({ preventScroll: true });
      },
      onChange: () => {},
    });
    replace(
      strategyCard,
      h("div", { class: "canvas-card-head" }, h("h3", {}, t("canvas.title")), h("p", { class: "muted small" }, t("canvas.intro"))),
      canvas.element,
    );
  };

  // ---- JSON view ---------------------------------------------------------------------------
  const render = () => {
    if (jsonMode) {
      replace(jsonCard, h("h3", {}, t("campaign.form.json_title")), h("p", { class: "muted small" }, t("canvas.json_hint")), field(null, jsonArea));
      replace(formTop, basics(), jsonCard);
      strategyCard.hidden = true;
    } else {
      renderTrigger();
      renderAudience();
      buildCanvas();
      replace(formTop, basics(), triggerCard, audienceCard);
      strategyCard.hidden = false;
    }
  };
  // The browser's own sentence is English: the reader gets where the text stops being
  // JSON (line and column), the browser's words stay in the tooltip.
  const jsonError = (err) => {
    const syntax = err instanceof SyntaxError;
    const text = syntax ? t("canvas.json_syntax", jsonPlace(jsonArea.value, err.message)) : String(err.message);
    return h(
      "div",
      { class: "alert alert-error", role: "alert", "data-testid": "form-error", "data-code": syntax ? "json_syntax" : "json_not_object", title: syntax ? err.message : null },
      h("div", { class: "alert-title" }, t("campaign.form.json_invalid")),
      h("span", { "data-testid": "json-error-place" }, text),
    );
  };
  const parseJson = () => {
    const parsed = JSON.parse(jsonArea.value);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error(t("canvas.json_not_object"));
    return parsed;
  };
  const modeBtn = h("button", { class: "btn btn-sm", type: "button", "data-testid": "campaign-json-toggle" });
  const setModeLabel = () => (modeBtn.textContent = jsonMode ? t("canvas.back_to_canvas") : t("canvas.as_json"));
  modeBtn.addEventListener("click", () => {
    replace(topErrors);
    if (!jsonMode) {
      jsonArea.value = JSON.stringify(doc, null, 2);
      jsonMode = true;
    } else {
      try {
        doc = parseJson();
      } catch (err) {
        topErrors.appendChild(jsonError(err));
        return;
      }
      jsonMode = false;
    }
    setModeLabel();
    render();
  });
  setModeLabel();

  // ---- saving ------------------------------------------------------------------------------
  const save = h("button", { class: "btn btn-primary", type: "button", "data-testid": "campaign-save" }, editing ? t("common.save") : t("campaign.form.create"));
  save.addEventListener(
    "click",
    busy(save, async () => {
      replace(topErrors);
      clearFieldErrors(formTop);
      let body;
      if (jsonMode) {
        try {
          body = { name: name.trim(), ...parseJson() };
        } catch (err) {
          topErrors.appendChild(jsonError(err));
          return;
        }
      } else body = { name: name.trim(), ...doc };
      try {
        const saved = editing ? await api.patch(`${ctx.base}/${campaign.id}`, body) : await api.post(ctx.base, body);
        toast(t("campaign.saved", { name: saved.name }));
        navigate(`#/p/${pid}/s/${sid}/campaigns/${saved.id}`);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        const fields = err.fieldErrors.map((f) => ({ ...f, field: normalizePath(f.field) }));
        let unplaced = fields;
        if (fields.length && !jsonMode) {
          const onCanvas = fields.filter((f) => f.field === "strategy" || f.field.startsWith("strategy.") || f.field.startsWith("strategy["));
          const elsewhere = fields.filter((f) => !onCanvas.includes(f));
          unplaced = canvas.showErrors(onCanvas);
          if (elsewhere.length) unplaced = [...unplaced, ...applyFieldErrors(formTop, { fieldErrors: elsewhere })];
        }
        topErrors.appendChild(formError(err, unplaced));
        if (!fields.length || unplaced.length) topErrors.scrollIntoView({ block: "nearest" });
      }
    }),
  );

  replace(
    view,
    breadcrumb([{ label: t("campaign.title"), href: `#/p/${pid}/s/${sid}/campaigns` }, { label: ctx.space.name, href: `#/p/${pid}/s/${sid}/campaigns` }, { label: editing ? campaign.name : t("campaign.new") }], { label: t("campaign.breadcrumb") }),
    h("div", { class: "page-head" }, h("h1", {}, editing ? t("campaign.form.edit_title", { name: campaign.name }) : t("campaign.form.new_title")), modeBtn),
    editing && campaign.status !== "draft" ? h("div", { class: "alert alert-info" }, t("campaign.form.back_to_draft")) : null,
    topErrors,
    formTop,
    strategyCard,
    h("div", { class: "form-actions" }, h("a", { class: "btn", href: editing ? `#/p/${pid}/s/${sid}/campaigns/${campaign.id}` : `#/p/${pid}/s/${sid}/campaigns` }, t("common.cancel")), save),
  );
  render();
}
