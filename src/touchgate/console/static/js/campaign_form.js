// The campaign editor: trigger, audience filter, participation and a chain of send
// steps through touchpoints usable in the space (enabled and authorised), with
// parameter inputs by type. Campaigns the form cannot draw (audience and A/B splits,
// event triggers) are edited as JSON instead; the service validates either way.

import { ApiError, api, listAll } from "./api.js";
import { busy, field, h, replace, toast } from "./dom.js";
import { applyFieldErrors, clearFieldErrors, errorText, formError } from "./errors.js";
import { t } from "./i18n.js";

const NAME_MAX = 20;
const OPERATORS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"];
const NO_VALUE = new Set(["exists", "not_exists"]);
const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function wallTime(iso) {
  // Stored times carry the project's offset; their wall-clock part is what the user typed.
  return iso ? String(iso).slice(0, 16) : "";
}

function blankCondition() {
  return { attribute: "", operator: "eq", value: "" };
}

function toGroup(filter) {
  if (!filter) return { op: "and", conditions: [blankCondition()] };
  if (filter.conditions) {
    return { op: filter.op || "and", conditions: filter.conditions.map((c) => (c.conditions ? toGroup(c) : fromCondition(c))) };
  }
  return { op: "and", conditions: [fromCondition(filter)] };
}

function fromCondition(c) {
  const value = Array.isArray(c.value) ? c.value.join(", ") : c.value === undefined || c.value === null ? "" : String(c.value);
  return { attribute: c.attribute || "", operator: c.operator || "eq", value };
}

function typed(text, type) {
  const raw = String(text ?? "").trim();
  if (type === "number") {
    const n = Number(raw);
    return raw !== "" && Number.isFinite(n) ? n : raw;
  }
  if (type === "boolean") return raw === "true" ? true : raw === "false" ? false : raw;
  return raw;
}

function buildFilter(group, catalogue) {
  return {
    op: group.op,
    conditions: group.conditions.map((c) => {
      if (c.conditions) return buildFilter(c, catalogue);
      const out = { attribute: c.attribute, operator: c.operator };
      if (NO_VALUE.has(c.operator)) return out;
      const type = (catalogue.get(c.attribute) || {}).type || "string";
      out.value = c.operator === "in" || c.operator === "not_in"
        ? String(c.value).split(/[,，\n]/).map((v) => v.trim()).filter(Boolean).map((v) => typed(v, type))
        : typed(c.value, type);
      return out;
    }),
  };
}

/** Whether the visual editor can show this campaign without losing anything. */
function drawable(c) {
  if (!c) return true;
  const trig = c.trigger || {};
  if (trig.type !== "once" && trig.type !== "recurring") return false;
  // A chain of send steps (each optionally followed by the next) is what the form draws.
  for (let step = c.strategy; step; step = step.next) {
    if (step.type !== "send" || step.branches || step.otherwise) return false;
  }
  return Boolean(c.strategy);
}

function stepState(step, index) {
  return {
    id: step.id || `s${index + 1}`,
    mode: step.mode || "first_success",
    timing: { type: (step.timing && step.timing.type) || "now", minutes: String((step.timing && step.timing.minutes) ?? 30) },
    channels: (step.channels || [{ touchpoint_id: null, params: {} }]).map((ch) => ({ touchpoint_id: ch.touchpoint_id ?? null, params: { ...(ch.params || {}) } })),
  };
}

function stepBody(step, next) {
  const timing = step.timing.type === "delay" ? { type: "delay", minutes: typed(step.timing.minutes, "number") } : { type: step.timing.type };
  const out = {
    type: "send",
    id: step.id,
    mode: step.mode,
    timing,
    channels: step.timing.type === "none" ? [] : step.channels.map((ch) => {
      const params = {};
      for (const [k, v] of Object.entries(ch.params)) if (v !== "" && v !== undefined && v !== null) params[k] = v;
      return { touchpoint_id: ch.touchpoint_id, params };
    }),
  };
  if (next) out.next = next;
  return out;
}

function stateFrom(c) {
  const trig = (c && c.trigger) || { type: "once" };
  const aud = (c && c.audience) || { match: "all" };
  const part = (c && c.participation) || { mode: "once" };
  const chain = [];
  for (let step = c && c.strategy; step; step = step.next) chain.push(step);
  return {
    name: c ? c.name : "",
    anti_disturb: c ? Boolean(c.anti_disturb) : true,
    trigger: {
      type: trig.type === "recurring" ? "recurring" : "once",
      onceMode: trig.at ? "at" : "now",
      at: wallTime(trig.at),
      recurMode: trig.cron ? "cron" : "every",
      cron: trig.cron || "",
      every: trig.every || "daily",
      time: trig.time || "10:00",
      weekday: typeof trig.weekday === "string" ? trig.weekday : "mon",
      day: String(trig.day ?? 1),
      start: wallTime(trig.start),
      end: wallTime(trig.end),
    },
    audience: {
      match: aud.match || "all",
      filter: toGroup(aud.filter),
      gidsText: (aud.gids || []).join("\n"),
    },
    participation: { mode: part.mode || "once", days: String(part.days ?? 7) },
    steps: (chain.length ? chain : [{}]).map(stepState),
  };
}

function bodyFrom(st, catalogue) {
  const tr = st.trigger;
  let trigger;
  if (tr.type === "once") trigger = tr.onceMode === "at" ? { type: "once", at: tr.at } : { type: "once" };
  else {
    trigger = { type: "recurring" };
    if (tr.recurMode === "cron") trigger.cron = tr.cron.trim();
    else {
      trigger.every = tr.every;
      trigger.time = tr.time;
      if (tr.every === "weekly") trigger.weekday = tr.weekday;
      if (tr.every === "monthly") trigger.day = typed(tr.day, "number");
    }
    if (tr.start) trigger.start = tr.start;
    if (tr.end) trigger.end = tr.end;
  }
  let audience;
  if (st.audience.match === "filter") audience = { match: "filter", filter: buildFilter(st.audience.filter, catalogue) };
  else if (st.audience.match === "list") {
    audience = { match: "list", gids: st.audience.gidsText.split(/[\s,，]+/).filter(Boolean).map((g) => typed(g, "number")) };
  } else audience = { match: "all" };
  const participation = st.participation.mode === "every" ? { mode: "every", days: typed(st.participation.days, "number") } : { mode: "once" };
  let strategy = null;
  for (let k = st.steps.length - 1; k >= 0; k--) strategy = stepBody(st.steps[k], strategy);
  return { name: st.name.trim(), trigger, audience, participation, anti_disturb: st.anti_disturb, strategy };
}

function radios(name, value, options, onChange, path) {
  return h(
    "div",
    { class: "segmented", "data-field": path || null },
    options.map(([v, label]) =>
      h("label", { class: "seg" }, h("input", { type: "radio", name, value: v, checked: value === v, "data-testid": `${name}-${v}`, onChange: () => onChange(v) }), h("span", {}, label)),
    ),
  );
}

export async function renderCampaignForm(ctx, campaign) {
  const { view, pid, sid, navigate } = ctx;
  const editing = Boolean(campaign);
  const [touchpoints, attributes] = await Promise.all([
    listAll(`/projects/${pid}/spaces/${sid}/touchpoints`),
    listAll(`/projects/${pid}/attributes`).catch(() => []),
  ]);
  if (!ctx.isCurrent()) return;
  const catalogue = new Map(attributes.map((a) => [a.key, a]));
  const st = stateFrom(campaign);
  let jsonMode = !drawable(campaign);
  const topErrors = h("div", { "data-testid": "campaign-form-errors" });
  const formSlot = h("div", { class: "editor" });
  const tz = ctx.project.timezone;

  // ---- basics --------------------------------------------------------------------------
  const counter = h("span", { class: "counter", "data-testid": "campaign-name-count" });
  const updateCounter = () => {
    const n = [...st.name.trim()].length;
    counter.textContent = `${n}/${NAME_MAX}`;
    counter.classList.toggle("over", n > NAME_MAX);
  };
  const basics = () => {
    const name = h("input", { type: "text", value: st.name, "data-field": "name", "data-testid": "campaign-name-input", placeholder: t("campaign.form.name_placeholder"), onInput: (e) => { st.name = e.target.value; updateCounter(); } });
    updateCounter();
    return h(
      "section",
      { class: "card" },
      h("h3", {}, t("campaign.form.basics")),
      h(
        "div",
        { class: "grid-2" },
        field(t("campaign.form.name"), h("div", { class: "with-counter" }, name, counter), { required: true, hint: t("campaign.form.name_hint") }),
        field(t("campaign.form.anti_disturb"), h("label", { class: "check" }, h("input", { type: "checkbox", checked: st.anti_disturb, "data-field": "anti_disturb", "data-testid": "campaign-anti-disturb", onChange: (e) => (st.anti_disturb = e.target.checked) }), t("campaign.form.anti_disturb_label")), { hint: t("campaign.form.anti_disturb_hint") }),
      ),
    );
  };

  // ---- trigger -------------------------------------------------------------------------
  const triggerSlot = h("section", { class: "card", "data-field": "trigger", "data-field-wrap": "trigger" });
  const renderTrigger = () => {
    const tr = st.trigger;
    const rerender = () => renderTrigger();
    const dt = (key, label) =>
      field(label, h("input", { type: "datetime-local", value: tr[key], "data-field": `trigger.${key}`, "data-testid": `trigger-${key}`, onInput: (e) => (tr[key] = e.target.value) }), { hint: t("campaign.form.tz_hint", { tz }) });
    let detail;
    if (tr.type === "once") {
      detail = h(
        "div",
        {},
        field(t("campaign.form.when"), radios("once-mode", tr.onceMode, [["now", t("campaign.form.once_now")], ["at", t("campaign.form.once_at")]], (v) => { tr.onceMode = v; rerender(); })),
        tr.onceMode === "at" ? h("div", { class: "grid-2" }, dt("at", t("campaign.form.at"))) : null,
      );
    } else {
      const everyFields = tr.recurMode === "cron"
        ? field(t("campaign.form.cron"), h("input", { type: "text", value: tr.cron, placeholder: "0 10 * * *", class: "mono", "data-field": "trigger.cron", "data-testid": "trigger-cron", onInput: (e) => (tr.cron = e.target.value) }), { hint: t("campaign.form.cron_hint") })
        : h(
            "div",
            { class: "grid-3" },
            field(t("campaign.form.every"), h("select", { "data-field": "trigger.every", "data-testid": "trigger-every", onChange: (e) => { tr.every = e.target.value; rerender(); } }, ["daily", "weekly", "monthly"].map((v) => h("option", { value: v, selected: tr.every === v }, t(`campaign.trigger.every.${v}`))))),
            tr.every === "weekly"
              ? field(t("campaign.form.weekday"), h("select", { "data-field": "trigger.weekday", onChange: (e) => (tr.weekday = e.target.value) }, WEEKDAYS.map((d) => h("option", { value: d, selected: tr.weekday === d }, t(`campaign.weekday.${d}`)))))
              : tr.every === "monthly"
                ? field(t("campaign.form.day"), h("input", { type: "number", min: 1, max: 31, value: tr.day, "data-field": "trigger.day", onInput: (e) => (tr.day = e.target.value) }))
                : h("div"),
            field(t("campaign.form.time"), h("input", { type: "time", value: tr.time, "data-field": "trigger.time", "data-testid": "trigger-time", onInput: (e) => (tr.time = e.target.value) })),
          );
      detail = h(
        "div",
        {},
        field(t("campaign.form.repeat"), radios("recur-mode", tr.recurMode, [["every", t("campaign.form.simple")], ["cron", t("campaign.form.cron")]], (v) => { tr.recurMode = v; rerender(); })),
        everyFields,
        h("div", { class: "grid-2" }, dt("start", t("campaign.form.start")), dt("end", t("campaign.form.end"))),
      );
    }
    replace(
      triggerSlot,
      h("h3", {}, t("campaign.form.trigger")),
      field(t("campaign.form.trigger_type"), radios("trigger-type", tr.type, [["once", t("campaign.trigger.type.once")], ["recurring", t("campaign.trigger.type.recurring")]], (v) => { tr.type = v; rerender(); }, "trigger.type")),
      detail,
    );
  };

  // ---- audience ------------------------------------------------------------------------
  const audienceSlot = h("section", { class: "card", "data-field": "audience", "data-field-wrap": "audience" });
  const renderAudience = () => {
    const a = st.audience;
    const part = st.participation;
    let detail = null;
    if (a.match === "filter") detail = groupEditor(a.filter, "audience.filter", renderAudience, 0);
    else if (a.match === "list") {
      detail = field(t("campaign.form.gids"), h("textarea", { rows: 4, class: "mono", "data-field": "audience.gids", "data-testid": "audience-gids", placeholder: "1001\n1002", onInput: (e) => (a.gidsText = e.target.value) }, a.gidsText), { hint: t("campaign.form.gids_hint") });
    }
    replace(
      audienceSlot,
      h("h3", {}, t("campaign.form.audience")),
      field(t("campaign.form.match"), radios("audience-match", a.match, [["all", t("campaign.audience.all")], ["filter", t("campaign.audience.filter")], ["list", t("campaign.audience.list")]], (v) => { a.match = v; renderAudience(); }, "audience.match")),
      detail,
      h(
        "div",
        { class: "grid-2" },
        field(t("campaign.form.participation"), radios("participation", part.mode, [["once", t("campaign.participation.once")], ["every", t("campaign.participation.every")]], (v) => { part.mode = v; renderAudience(); }, "participation.mode")),
        part.mode === "every"
          ? field(t("campaign.form.days"), h("input", { type: "number", min: 1, value: part.days, "data-field": "participation.days", "data-testid": "participation-days", onInput: (e) => (part.days = e.target.value) }))
          : h("div"),
      ),
    );
  };

  const groupEditor = (group, path, rerender, depth) => {
    return h(
      "div",
      { class: "group", "data-field": path, "data-field-wrap": path },
      h(
        "div",
        { class: "group-head" },
        h("span", { class: "small muted" }, t("campaign.filter.match")),
        h("select", { class: "select-sm", "data-field": `${path}.op`, "data-testid": "filter-op", onChange: (e) => (group.op = e.target.value) }, ["and", "or"].map((op) => h("option", { value: op, selected: group.op === op }, t(`campaign.filter.${op}`)))),
      ),
      group.conditions.map((c, i) => {
        const cpath = `${path}.conditions[${i}]`;
        const remove = h("button", { class: "icon-btn", type: "button", title: t("campaign.filter.remove"), "aria-label": t("campaign.filter.remove"), onClick: () => { group.conditions.splice(i, 1); rerender(); } }, "×");
        if (c.conditions) return h("div", {}, groupEditor(c, cpath, rerender, depth + 1), h("div", { class: "row-actions" }, remove));
        const attr = catalogue.get(c.attribute);
        const valueInput = NO_VALUE.has(c.operator)
          ? h("div")
          : attr && attr.type === "boolean" && c.operator !== "in" && c.operator !== "not_in"
            ? h("select", { "data-field": `${cpath}.value`, "data-testid": "filter-value", onChange: (e) => (c.value = e.target.value) }, h("option", { value: "" }, "—"), h("option", { value: "true", selected: c.value === "true" }, t("common.yes")), h("option", { value: "false", selected: c.value === "false" }, t("common.no")))
            : h("input", {
                type: attr && attr.type === "date" && c.operator !== "in" && c.operator !== "not_in" ? "date" : "text",
                value: c.value,
                placeholder: c.operator === "in" || c.operator === "not_in" ? t("campaign.filter.list_placeholder") : t("campaign.filter.value"),
                "data-field": `${cpath}.value`,
                "data-testid": "filter-value",
                onInput: (e) => (c.value = e.target.value),
              });
        return h(
          "div",
          { class: "cond", "data-testid": "filter-condition", "data-field-wrap": cpath },
          h(
            "select",
            { "data-field": `${cpath}.attribute`, "data-testid": "filter-attribute", onChange: (e) => { c.attribute = e.target.value; rerender(); } },
            h("option", { value: "" }, t("campaign.filter.attribute")),
            attributes.map((a) => h("option", { value: a.key, selected: c.attribute === a.key }, `${a.name} (${a.key})`)),
            c.attribute && !catalogue.has(c.attribute) ? h("option", { value: c.attribute, selected: true }, c.attribute) : null,
          ),
          h("select", { "data-field": `${cpath}.operator`, "data-testid": "filter-operator", onChange: (e) => { c.operator = e.target.value; rerender(); } }, OPERATORS.map((op) => h("option", { value: op, selected: c.operator === op }, t(`campaign.op.${op}`)))),
          valueInput,
          remove,
        );
      }),
      h(
        "div",
        { class: "row-actions group-actions" },
        h("button", { class: "btn btn-xs", type: "button", "data-testid": "filter-add", onClick: () => { group.conditions.push(blankCondition()); rerender(); } }, "+ ", t("campaign.filter.add")),
        depth < 3 ? h("button", { class: "btn btn-xs", type: "button", "data-testid": "filter-add-group", onClick: () => { group.conditions.push({ op: group.op === "and" ? "or" : "and", conditions: [blankCondition()] }); rerender(); } }, "+ ", t("campaign.filter.add_group")) : null,
      ),
    );
  };

  // ---- send steps ------------------------------------------------------------------------
  const stepSlot = h("div", { "data-field": "strategy", "data-field-wrap": "strategy" });
  const freeStepId = () => {
    const used = new Set(st.steps.map((x) => x.id));
    let n = st.steps.length + 1;
    while (used.has(`s${n}`)) n++;
    return `s${n}`;
  };
  const renderStep = () => {
    const last = st.steps[st.steps.length - 1];
    replace(
      stepSlot,
      touchpoints.length ? null : h("div", { class: "alert alert-warn", "data-testid": "no-touchpoints" }, t("campaign.form.no_touchpoints", { space: ctx.space.name })),
      st.steps.map((step, k) => stepEditor(step, k)),
      h(
        "button",
        {
          class: "btn",
          type: "button",
          "data-testid": "step-add",
          // A control group ends its path: nothing follows it.
          disabled: last.timing.type === "none" || st.steps.length >= 10,
          title: last.timing.type === "none" ? t("campaign.form.after_control") : null,
          onClick: () => {
            st.steps.push(stepState({ id: freeStepId(), timing: { type: "delay", minutes: 60 } }, st.steps.length));
            renderStep();
          },
        },
        "+ ",
        t("campaign.form.add_step"),
      ),
    );
  };

  const stepEditor = (step, k) => {
    const base = `strategy${".next".repeat(k)}`;
    const name = `s${k}`;
    return h(
      "section",
      { class: "card step-card", "data-testid": "send-step", "data-field": base, "data-field-wrap": base },
      h(
        "div",
        { class: "step-title" },
        h("h3", {}, k === 0 ? t("campaign.form.send") : t("campaign.form.follow_up", { n: k + 1 })),
        h("span", { class: "spacer" }),
        k > 0
          ? h("button", { class: "btn btn-sm btn-danger-ghost", type: "button", "data-testid": "step-remove", onClick: () => { st.steps.splice(k, 1); renderStep(); } }, t("campaign.form.remove_step"))
          : null,
      ),
      k > 0 ? h("p", { class: "muted small" }, t("campaign.form.follow_up_hint")) : null,
      h(
        "div",
        { class: "grid-2" },
        field(t("campaign.form.timing"), radios(`${name}-timing`, step.timing.type, [["now", t("campaign.timing.now")], ["delay", t("campaign.timing.delay")], ["none", t("campaign.timing.none")]], (v) => {
          step.timing.type = v;
          // Nothing may follow a control group.
          if (v === "none") st.steps.splice(k + 1);
          renderStep();
        }, `${base}.timing.type`), {
          hint: step.timing.type === "none" ? t("campaign.timing.none_hint") : null,
          extra: step.timing.type === "delay" ? h("div", { class: "input-row" }, h("input", { type: "number", min: 1, value: step.timing.minutes, "data-field": `${base}.timing.minutes`, "data-testid": "timing-minutes", onInput: (e) => (step.timing.minutes = e.target.value) }), h("span", { class: "muted" }, t("campaign.timing.minutes"))) : null,
        }),
        field(t("campaign.form.mode"), radios(`${name}-mode`, step.mode, [["first_success", t("campaign.mode.first_success")], ["all", t("campaign.mode.all")]], (v) => { step.mode = v; renderStep(); }, `${base}.mode`), { hint: t(`campaign.mode.${step.mode}_hint`) }),
      ),
      step.timing.type === "none"
        ? null
        : h(
            "div",
            { "data-field": `${base}.channels`, "data-field-wrap": `${base}.channels` },
            step.channels.map((ch, i) => channelEditor(step, base, ch, i)),
            h("button", { class: "btn btn-sm", type: "button", "data-testid": "channel-add", disabled: step.channels.length >= 10, onClick: () => { step.channels.push({ touchpoint_id: null, params: {} }); renderStep(); } }, "+ ", t("campaign.form.add_channel")),
          ),
    );
  };

  const channelEditor = (step, base, ch, i) => {
    const path = `${base}.channels[${i}]`;
    const tp = touchpoints.find((x) => x.id === ch.touchpoint_id);
    const paramsSlot = h("div", { class: "grid-2" });
    const select = h(
      "select",
      {
        "data-field": `${path}.touchpoint_id`,
        "data-testid": "channel-touchpoint",
        onChange: (e) => {
          ch.touchpoint_id = e.target.value ? Number(e.target.value) : null;
          ch.params = {};
          renderStep();
        },
      },
      h("option", { value: "" }, t("campaign.form.choose_touchpoint")),
      touchpoints.map((x) => h("option", { value: x.id, selected: x.id === ch.touchpoint_id }, `${x.name} · ${t(`tp.type.${x.type}`)}`)),
      ch.touchpoint_id && !tp ? h("option", { value: ch.touchpoint_id, selected: true }, t("campaign.form.unavailable_touchpoint", { id: ch.touchpoint_id })) : null,
    );
    if (tp) {
      for (const p of tp.template_params || []) paramsSlot.appendChild(paramInput(tp, p, ch, `${path}.params.${p.key}`));
      if (!(tp.template_params || []).length) paramsSlot.appendChild(h("p", { class: "muted small" }, t("campaign.form.no_params")));
    }
    const st_ = step.channels;
    return h(
      "div",
      { class: "channel", "data-testid": "channel", "data-field-wrap": path, "data-field": path },
      h(
        "div",
        { class: "channel-head" },
        h("span", { class: "prio", title: t("campaign.form.priority") }, `${i + 1}`),
        select,
        h("button", { class: "icon-btn", type: "button", title: t("tp.param.up"), "aria-label": t("tp.param.up"), disabled: i === 0, onClick: () => { st_.splice(i - 1, 0, st_.splice(i, 1)[0]); renderStep(); } }, "↑"),
        h("button", { class: "icon-btn", type: "button", title: t("campaign.form.remove_channel"), "aria-label": t("campaign.form.remove_channel"), onClick: () => { st_.splice(i, 1); renderStep(); } }, "×"),
      ),
      paramsSlot,
    );
  };

  const paramInput = (tp, p, ch, path) => {
    const testid = `param-${p.key}`;
    let control;
    if (p.type === "enum") {
      control = h("div", { "data-field": path, "data-testid": testid }, h("span", { class: "muted small" }, t("common.loading")));
      loadOptions(tp, p, ch, control);
    } else {
      control = h("input", {
        type: p.type === "date" ? "date" : p.type === "number" ? "number" : "text",
        step: p.type === "number" ? "any" : null,
        value: ch.params[p.key] ?? "",
        placeholder: p.type === "text" ? t("campaign.form.text_placeholder") : null,
        "data-field": path,
        "data-testid": testid,
        onInput: (e) => (ch.params[p.key] = p.type === "number" ? typed(e.target.value, "number") : e.target.value),
      });
    }
    return field(p.name, control, { required: p.required, hint: `${p.key} · ${t(`tp.param.type.${p.type}`)}` });
  };

  const loadOptions = async (tp, p, ch, slot) => {
    let options;
    try {
      const data = await api.get(`/projects/${pid}/touchpoints/${tp.id}/params/${encodeURIComponent(p.key)}/options`);
      options = Array.isArray(data) ? data : data.items || [];
    } catch (err) {
      replace(slot, h("div", { class: "field-error", title: err.message }, errorText(err)));
      return;
    }
    const current = ch.params[p.key];
    const parentOf = options.find((o) => (o.children || []).some((c) => c.code === current));
    const twoLevel = options.some((o) => o.children && o.children.length);
    const first = h("select", { "aria-label": p.name, "data-testid": "enum-level1" }, h("option", { value: "" }, t("test.choose")), options.map((o) => h("option", { value: o.code, selected: parentOf ? parentOf.code === o.code : o.code === current }, o.children && o.children.length ? `${o.name} ›` : `${o.name} (${o.code})`)));
    const second = h("select", { "aria-label": p.name, "data-testid": "enum-level2" });
    const sync = (fromFirst) => {
      const chosen = options.find((o) => o.code === first.value);
      const children = (chosen && chosen.children) || [];
      if (fromFirst) {
        replace(second, h("option", { value: "" }, children.length ? t("test.choose") : "—"), children.map((c) => h("option", { value: c.code, selected: c.code === current }, `${c.name} (${c.code})`)));
        second.disabled = !children.length;
      }
      ch.params[p.key] = children.length ? second.value : first.value;
    };
    first.addEventListener("change", () => sync(true));
    second.addEventListener("change", () => sync(false));
    sync(true);
    replace(slot, twoLevel ? h("div", { class: "cascade" }, first, second) : first);
    if (options.length > 100) slot.appendChild(h("div", { class: "hint" }, t("tp.enum.count", { n: options.length })));
  };

  // ---- JSON mode -------------------------------------------------------------------------
  const jsonArea = h("textarea", { class: "json-editor", rows: 22, spellcheck: "false", "data-field": "body", "data-testid": "campaign-json" });
  const content = () => {
    const b = bodyFrom(st, catalogue);
    delete b.name;
    return b;
  };

  const render = () => {
    if (jsonMode) {
      replace(
        formSlot,
        basics(),
        h("section", { class: "card" }, h("h3", {}, t("campaign.form.json_title")), h("p", { class: "muted small" }, t("campaign.form.json_hint")), field(null, jsonArea)),
      );
    } else {
      renderTrigger();
      renderAudience();
      renderStep();
      replace(formSlot, basics(), triggerSlot, audienceSlot, stepSlot);
    }
  };
  jsonArea.value = JSON.stringify(campaign && jsonMode ? { trigger: campaign.trigger, audience: campaign.audience, participation: campaign.participation, anti_disturb: campaign.anti_disturb, strategy: campaign.strategy } : content(), null, 2);

  const modeBtn = h("button", { class: "btn btn-sm", type: "button", "data-testid": "campaign-json-toggle" });
  const setModeLabel = () => (modeBtn.textContent = jsonMode ? t("campaign.form.visual") : t("campaign.form.as_json"));
  modeBtn.addEventListener("click", () => {
    replace(topErrors);
    if (!jsonMode) {
      jsonArea.value = JSON.stringify(content(), null, 2);
      jsonMode = true;
    } else {
      let parsed;
      try {
        parsed = JSON.parse(jsonArea.value);
      } catch (err) {
        topErrors.appendChild(h("div", { class: "alert alert-error" }, h("div", { class: "alert-title" }, t("campaign.form.json_invalid")), h("span", { lang: "en" }, String(err.message))));
        return;
      }
      if (!drawable(parsed)) {
        topErrors.appendChild(h("div", { class: "alert alert-warn" }, t("campaign.form.not_drawable")));
        return;
      }
      const next = stateFrom({ ...parsed, name: st.name });
      Object.assign(st, next);
      jsonMode = false;
    }
    setModeLabel();
    render();
  });
  setModeLabel();

  const save = h("button", { class: "btn btn-primary", type: "button", "data-testid": "campaign-save" }, editing ? t("common.save") : t("campaign.form.create"));
  save.addEventListener(
    "click",
    busy(save, async () => {
      replace(topErrors);
      clearFieldErrors(formSlot);
      let body;
      if (jsonMode) {
        try {
          body = { ...JSON.parse(jsonArea.value), name: st.name.trim() };
        } catch (err) {
          topErrors.appendChild(h("div", { class: "alert alert-error", "data-testid": "form-error" }, h("div", { class: "alert-title" }, t("campaign.form.json_invalid")), h("span", { lang: "en" }, String(err.message))));
          return;
        }
      } else body = bodyFrom(st, catalogue);
      try {
        const saved = editing ? await api.patch(`${ctx.base}/${campaign.id}`, body) : await api.post(ctx.base, body);
        toast(t("campaign.saved", { name: saved.name }));
        navigate(`#/p/${pid}/s/${sid}/campaigns/${saved.id}`);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        const unplaced = err.fieldErrors.length && !jsonMode ? applyFieldErrors(formSlot, err) : err.fieldErrors;
        topErrors.appendChild(formError(err, unplaced));
        if (!err.fieldErrors.length || unplaced.length) topErrors.scrollIntoView({ block: "nearest" });
      }
    }),
  );

  replace(
    view,
    h("div", { class: "breadcrumb" }, h("a", { href: `#/p/${pid}/s/${sid}/campaigns` }, t("campaign.title")), "›", ctx.space.name),
    h("div", { class: "page-head" }, h("h1", {}, editing ? t("campaign.form.edit_title", { name: campaign.name }) : t("campaign.form.new_title")), modeBtn),
    editing && campaign.status !== "draft" ? h("div", { class: "alert alert-info" }, t("campaign.form.back_to_draft")) : null,
    topErrors,
    formSlot,
    h("div", { class: "form-actions" }, h("a", { class: "btn", href: editing ? `#/p/${pid}/s/${sid}/campaigns/${campaign.id}` : `#/p/${pid}/s/${sid}/campaigns` }, t("common.cancel")), save),
  );
  render();
}
