// The campaign canvas: the whole strategy tree drawn as nodes and branches (top-down at
// desktop width, an indented vertical tree on a phone), with an inspector that edits the
// selected step in place. It edits the campaign's JSON directly, so anything it does not
// touch is saved exactly as it was loaded. Field errors from the service are matched to
// the step they belong to by their path and shown on that node and in its inspector.

import { badge, confirmDialog, field, h, replace } from "./dom.js";
import { applyFieldErrors, fieldErrorItem } from "./errors.js";
import { blankFilter, filterEditor, filterSummary } from "./filters.js";
import { formatRelative, t } from "./i18n.js";
import { paramControl } from "./param_inputs.js";
import {
  MAX_AB_BRANCHES,
  MAX_CHANNELS,
  MAX_SPLIT_BRANCHES,
  MIN_AB_BRANCHES,
  STEP_KINDS,
  allSteps,
  canMove,
  childSlots,
  evenPercents,
  insertStep,
  isControl,
  kindOf,
  moveItem,
  moveStep,
  newChannel,
  owningStep,
  percentSum,
  removalCount,
  removeStep,
  slotAt,
} from "./strategy.js";

const NARROW = "(max-width: 900px)";
const UNITS = [
  ["days", 1440],
  ["hours", 60],
  ["minutes", 1],
];
const LETTERS = "ABCDEFGHIJ";

/** A touchpoint's state in this space: enabled, authorised, last test. */
export function touchpointState(tp, sid) {
  if (!tp) return h("div", { class: "tp-state", "data-testid": "tp-state" }, badge(t("canvas.tp.unknown"), "error"));
  const enabled = tp.status === "enabled";
  const authorised = (tp.space_ids || []).includes(sid);
  const last = tp.last_test;
  const test = !last || !last.at
    ? badge(t("tp.never_tested"), "warn", { title: t("tp.never_tested_hint"), "data-state": "never_tested" })
    : last.ok
      ? badge(t("canvas.tp.tested", { when: formatRelative(last.at) }), "ok", { "data-state": "tested" })
      : badge(t("canvas.tp.test_failed", { when: formatRelative(last.at) }), "error", { "data-state": "test_failed" });
  return h(
    "div",
    { class: "tp-state", "data-testid": "tp-state" },
    enabled ? badge(t("tp.status.enabled"), "ok", { "data-state": "enabled" }) : badge(t("tp.status.disabled"), "error", { "data-state": "disabled" }),
    authorised ? badge(t("canvas.tp.authorised"), "ok", { "data-state": "authorised" }) : badge(t("canvas.tp.not_authorised"), "error", { "data-state": "not_authorised" }),
    test,
  );
}

export function usable(tp, sid) {
  return Boolean(tp) && tp.status === "enabled" && (tp.space_ids || []).includes(sid);
}

function delayParts(minutes) {
  if (!Number.isInteger(minutes) || minutes <= 0) return [minutes ?? "", 1];
  for (const [, factor] of UNITS) if (minutes % factor === 0) return [minutes / factor, factor];
  return [minutes, 1];
}

export function delayText(minutes) {
  const [amount, factor] = delayParts(minutes);
  const unit = UNITS.find(([, f]) => f === factor)[0];
  return t(`canvas.delay.${unit}`, { n: amount });
}

/**
 * opts: doc (the campaign content; doc.strategy is edited), sid, touchpoints (every
 * touchpoint of the project), attributes (the catalogue), loadOptions(tid, key) and
 * eventProperties(name) (cached promises), entry() → the entry node's text, onEntry()
 * (the entry node was activated), onChange() after every edit.
 */
export function createCanvas(opts) {
  const { doc, sid, touchpoints, attributes } = opts;
  const tpById = new Map(touchpoints.map((tp) => [tp.id, tp]));
  const catalogue = new Map(attributes.map((a) => [a.key, a]));
  const narrow = window.matchMedia(NARROW);
  const element = h("div", { class: "canvas-layout", "data-testid": "canvas" });
  const state = { selected: null, chooser: null, errors: [], focusAfter: null };
  // What an edit can bring back: channels of a step turned into a control group, a
  // delay's minutes, the values typed for a touchpoint before switching to another.
  const stashedChannels = new WeakMap();
  const stashedMinutes = new WeakMap();
  const paramsByTouchpoint = new WeakMap();
  let cards = new Map();

  const changed = () => opts.onChange();
  const stepPaths = () => allSteps(doc.strategy).map((s) => s.path);
  const stepAt = (path) => {
    const slot = slotAt(doc, path);
    return slot ? slot.holder[slot.key] : null;
  };
  const errorsOf = (path) => state.errors.filter((e) => owningStep(stepPaths(), e.field) === path);

  /** A change of shape: stale error paths go, everything is drawn again. */
  const restructure = (select = state.selected, focus = null) => {
    state.errors = [];
    state.selected = select;
    state.chooser = null;
    state.focusAfter = focus;
    render();
    changed();
  };

  // ---- the tree ------------------------------------------------------------------------

  const kindLabel = (kind) => t(`canvas.kind.${kind}`);

  const sendSummary = (step) => {
    if (isControl(step)) return [h("span", { class: "node-line" }, t("canvas.summary.control"))];
    const channels = Array.isArray(step.channels) ? step.channels : [];
    const names = channels.map((ch, i) => {
      const tp = tpById.get(ch.touchpoint_id);
      const name = tp ? tp.name : ch.touchpoint_id ? t("canvas.tp.missing", { id: ch.touchpoint_id }) : t("canvas.tp.none");
      return h("span", { class: usable(tp, sid) ? "node-tp" : "node-tp node-tp-bad" }, channels.length > 1 && step.mode !== "all" ? `${i + 1}. ${name}` : name);
    });
    const timing = step.timing || {};
    return [
      h("span", { class: "node-line node-tps" }, names.length ? names : t("canvas.tp.none")),
      h(
        "span",
        { class: "node-line muted" },
        timing.type === "delay" ? delayText(timing.minutes) : t("campaign.timing.now"),
        channels.length > 1 ? ` · ${t(`campaign.mode.${step.mode === "all" ? "all" : "first_success"}`)}` : "",
      ),
    ];
  };

  const summary = (step, kind) => {
    if (kind === "send") return sendSummary(step);
    const n = Array.isArray(step.branches) ? step.branches.length : 0;
    if (kind === "ab") {
      const sum = percentSum(step);
      return [
        h("span", { class: "node-line" }, (step.branches || []).map((br) => `${br.percent ?? "?"}%`).join(" / ")),
        sum !== 100 ? h("span", { class: "node-line node-warn" }, t("canvas.ab.sum_off", { sum })) : null,
      ];
    }
    if (kind === "unknown") return [h("span", { class: "node-line" }, t("canvas.summary.unknown", { type: String(step && step.type) }))];
    return [h("span", { class: "node-line" }, t(kind === "event" ? "canvas.summary.event_branches" : "canvas.summary.branches", { n }))];
  };

  const cardContent = (step, path) => {
    const kind = kindOf(step);
    const errors = errorsOf(path).length;
    return [
      h(
        "span",
        { class: "node-head" },
        h("span", { class: `node-icon node-icon-${kind}`, "aria-hidden": "true" }),
        h("span", { class: "node-kind" }, kindLabel(kind)),
        errors ? h("span", { class: "node-errors", "data-testid": "node-errors" }, t("canvas.problems", { n: errors })) : null,
      ),
      step.name ? h("span", { class: "node-name", "data-testid": "node-name" }, step.name) : null,
      summary(step, kind),
      h("span", { class: "node-id" }, step.id ? `#${step.id}` : ""),
    ];
  };

  const branchLabel = (step, slot) => {
    const kind = kindOf(step);
    if (slot.branch === -1) return t(kind === "event" ? "canvas.branch.otherwise" : "canvas.branch.everyone_else");
    const br = step.branches[slot.branch] || {};
    if (kind === "ab") return `${LETTERS[slot.branch] || slot.branch + 1} · ${br.percent ?? "?"}%`;
    return `${slot.branch + 1} · ${filterSummary(br.filter, catalogue)}`;
  };

  /** Redraw one node's card and its branch labels after a value changed. */
  const refreshCard = (path) => {
    const entry = cards.get(path);
    const step = stepAt(path);
    if (!entry || !step) return;
    replace(entry.card, cardContent(step, path));
    entry.labels.forEach(([label, slot]) => (label.textContent = branchLabel(step, slot)));
  };

  const select = (path) => {
    state.selected = path;
    state.chooser = null;
    state.focusAfter = "inspector";
    render();
  };

  const node = (step, path) => {
    const kind = kindOf(step);
    const card = h(
      "button",
      {
        type: "button",
        class: `node node-${kind}${state.selected === path ? " selected" : ""}${errorsOf(path).length ? " has-errors" : ""}`,
        "data-testid": "node",
        "data-kind": kind,
        "data-path": path,
        "data-step-id": step.id ?? "",
        "aria-pressed": state.selected === path ? "true" : "false",
        "data-focus": `node:${path}`,
        onClick: () => (state.selected === path ? deselect() : select(path)),
      },
      cardContent(step, path),
    );
    cards.set(path, { card, labels: [] });
    return card;
  };

  const chooser = (slotPath) => {
    const eventTrigger = doc.trigger && doc.trigger.type === "event";
    return h(
      "div",
      { class: "chooser", role: "group", "aria-label": t("canvas.add_step"), "data-testid": "step-chooser" },
      STEP_KINDS.filter((k) => k !== "event" || eventTrigger).map((k) =>
        h(
          "button",
          {
            type: "button",
            class: `btn btn-xs chooser-${k}`,
            "data-testid": `choose-${k}`,
            onClick: () => {
              insertStep(doc, slotPath, k);
              restructure(slotPath, "inspector");
            },
          },
          h("span", { class: `node-icon node-icon-${k}`, "aria-hidden": "true" }),
          kindLabel(k),
        ),
      ),
      h("button", { type: "button", class: "btn btn-xs btn-ghost", "data-testid": "choose-cancel", onClick: () => { state.chooser = null; state.focusAfter = `add:${slotPath}`; render(); } }, t("common.cancel")),
    );
  };

  const openChooser = (slotPath) => {
    state.chooser = slotPath;
    state.focusAfter = "chooser";
    render();
  };

  /** The line into a slot, with a button to insert a step there. */
  const connector = (slotPath, filled) =>
    h(
      "div",
      { class: "connector" },
      filled && state.chooser !== slotPath
        ? h("button", { type: "button", class: "insert-btn", title: t("canvas.insert_step"), "aria-label": t("canvas.insert_step"), "data-testid": "insert-step", "data-slot": slotPath, "data-focus": `add:${slotPath}`, onClick: () => openChooser(slotPath) }, "+")
        : null,
    );

  const endSlot = (slotPath, control) => {
    if (control) return h("div", { class: "end end-control", "data-testid": "path-end" }, t("canvas.end_control"));
    if (state.chooser === slotPath) return chooser(slotPath);
    return h(
      "div",
      { class: "end", "data-field": slotPath === "strategy" ? "strategy" : null },
      h("button", { type: "button", class: "btn btn-xs add-btn", "data-testid": "add-step", "data-slot": slotPath, "data-focus": `add:${slotPath}`, onClick: () => openChooser(slotPath) }, "+ ", t("canvas.add_step")),
      h("span", { class: "end-label muted small" }, slotPath === "strategy" ? t("canvas.no_steps") : t("canvas.end")),
    );
  };

  const flow = (slot, inspectorEl) => {
    const step = slot.holder[slot.key];
    const column = h("div", { class: "flow" });
    const filled = Boolean(step && typeof step === "object");
    column.appendChild(connector(slot.path, filled));
    if (filled && state.chooser === slot.path) column.appendChild(chooser(slot.path));
    if (!filled) {
      column.appendChild(endSlot(slot.path, false));
      return column;
    }
    const card = node(step, slot.path);
    column.appendChild(h("div", { class: "node-wrap" }, card));
    // On a phone the inspector opens right under its node.
    if (inspectorEl && state.selected === slot.path && narrow.matches) column.appendChild(inspectorEl);
    const kind = kindOf(step);
    if (kind === "send") {
      if (isControl(step)) {
        column.appendChild(h("div", { class: "connector" }));
        column.appendChild(endSlot(null, true));
      } else for (const child of childSlots(step, slot.path)) column.append(...flow(child, inspectorEl).childNodes);
      return column;
    }
    if (kind === "unknown") return column;
    const slots = childSlots(step, slot.path);
    const row = h("div", { class: "branches", "data-count": slots.length });
    for (const child of slots) {
      const label = h("button", { type: "button", class: `branch-label${child.branch === -1 ? " branch-else" : ""}`, "data-testid": "branch-label", "data-branch": child.branch, onClick: () => select(slot.path) });
      label.textContent = branchLabel(step, child);
      cards.get(slot.path).labels.push([label, child]);
      row.appendChild(h("div", { class: "branch" }, h("div", { class: "branch-top" }, label), flow(child, inspectorEl)));
    }
    column.appendChild(h("div", { class: "connector connector-split" }));
    column.appendChild(row);
    return column;
  };

  const entryNode = () =>
    h(
      "div",
      { class: "node-wrap" },
      h(
        "button",
        { type: "button", class: "node node-entry", "data-testid": "node-entry", onClick: () => opts.onEntry() },
        h("span", { class: "node-head" }, h("span", { class: "node-icon node-icon-entry", "aria-hidden": "true" }), h("span", { class: "node-kind" }, t("canvas.entry"))),
        opts.entry().map((line) => h("span", { class: "node-line" }, line)),
      ),
    );

  // ---- the inspector ---------------------------------------------------------------------

  const deselect = () => {
    const path = state.selected;
    state.selected = null;
    state.focusAfter = path ? `node:${path}` : null;
    render();
  };

  const radios = (name, value, options, onPick, path) =>
    h(
      "div",
      { class: "segmented segmented-sm", "data-field": path || null, role: "radiogroup" },
      options.map(([v, label]) =>
        h("label", { class: "seg" }, h("input", { type: "radio", name, value: v, checked: value === v, "data-testid": `${name.split(":").pop()}-${v}`, onChange: () => onPick(v) }), h("span", {}, label)),
      ),
    );

  const stepActions = (step, path) => {
    const up = canMove(doc, path, -1);
    const down = canMove(doc, path, 1);
    const kind = kindOf(step);
    return h(
      "div",
      { class: "inspector-actions" },
      kind === "send"
        ? [
            h("button", { type: "button", class: "btn btn-sm", disabled: !up, "data-testid": "step-up", "data-focus": "step-up", onClick: () => restructure(moveStep(doc, path, -1), "step-up") }, "↑ ", t("canvas.move_up")),
            h("button", { type: "button", class: "btn btn-sm", disabled: !down, "data-testid": "step-down", "data-focus": "step-down", onClick: () => restructure(moveStep(doc, path, 1), "step-down") }, "↓ ", t("canvas.move_down")),
          ]
        : null,
      h("span", { class: "spacer" }),
      h(
        "button",
        {
          type: "button",
          class: "btn btn-sm btn-danger-ghost",
          "data-testid": "step-remove",
          onClick: async () => {
            const n = removalCount(doc, path);
            if (n > 1) {
              const ok = await confirmDialog(t("canvas.remove_title"), t("canvas.remove_text", { n }), { danger: true, okLabel: t("canvas.remove_step") });
              if (!ok) return;
            }
            removeStep(doc, path);
            restructure(stepAt(path) ? path : null, `node:${path}`);
          },
        },
        kindOf(step) === "send" ? t("canvas.remove_step") : t("canvas.remove_split"),
      ),
    );
  };

  const timingEditor = (step, path) => {
    const timing = step.timing && typeof step.timing === "object" ? step.timing : { type: "now" };
    const pick = async (type) => {
      if (type === timing.type) return;
      if (type === "none" && step.next) {
        const n = allSteps(step.next, `${path}.next`).length;
        const ok = await confirmDialog(t("canvas.control_title"), t("canvas.control_text", { n }), { danger: true, okLabel: t("campaign.timing.none") });
        if (!ok) {
          render();
          return;
        }
        delete step.next;
      }
      if (timing.type === "delay") stashedMinutes.set(step, timing.minutes);
      if (type === "none") {
        stashedChannels.set(step, step.channels);
        step.channels = [];
      } else if (timing.type === "none" || !Array.isArray(step.channels) || !step.channels.length) {
        step.channels = stashedChannels.get(step) || [newChannel()];
      }
      step.timing = type === "delay" ? { type, minutes: stashedMinutes.get(step) ?? 60 } : { type };
      restructure(path, `timing-${type}`);
    };
    let delay = null;
    if (timing.type === "delay") {
      const [amount, factor] = delayParts(timing.minutes);
      const amountInput = h("input", { type: "number", min: 1, step: 1, value: String(amount), "data-field": `${path}.timing.minutes`, "data-testid": "delay-amount", "aria-label": t("canvas.delay.amount") });
      const unit = h("select", { class: "select-sm", "data-testid": "delay-unit", "aria-label": t("canvas.delay.unit") }, UNITS.map(([name, f]) => h("option", { value: f, selected: f === factor }, t(`canvas.unit.${name}`))));
      const update = () => {
        const raw = amountInput.value.trim();
        const n = Number(raw);
        timing.minutes = raw === "" ? null : Number.isFinite(n) ? Math.round(n * Number(unit.value) * 1000) / 1000 : raw;
        refreshCard(path);
        changed();
      };
      amountInput.addEventListener("input", update);
      unit.addEventListener("change", update);
      delay = h("div", { class: "input-row delay-row" }, amountInput, unit);
    }
    return field(
      t("campaign.form.timing"),
      radios(`${path}:timing`, timing.type, [["now", t("campaign.timing.now")], ["delay", t("campaign.timing.delay")], ["none", t("campaign.timing.none")]], pick, `${path}.timing.type`),
      { extra: delay, hint: timing.type === "none" ? t("campaign.timing.none_hint") : timing.type === "delay" ? t("canvas.delay.hint") : null },
    );
  };

  const touchpointSelect = (step, ch, cpath) => {
    const current = ch.touchpoint_id;
    const good = touchpoints.filter((tp) => usable(tp, sid));
    const bad = touchpoints.filter((tp) => !usable(tp, sid));
    const reason = (tp) => (tp.status !== "enabled" ? t("canvas.tp.why_disabled") : t("canvas.tp.why_not_authorised"));
    return h(
      "select",
      {
        "data-field": `${cpath}.touchpoint_id`,
        "data-testid": "channel-touchpoint",
        "aria-label": t("canvas.tp.pick"),
        onChange: (e) => {
          const memo = paramsByTouchpoint.get(ch) || new Map();
          paramsByTouchpoint.set(ch, memo);
          if (ch.touchpoint_id) memo.set(ch.touchpoint_id, ch.params);
          ch.touchpoint_id = e.target.value ? Number(e.target.value) : null;
          ch.params = memo.get(ch.touchpoint_id) || {};
          restructure(state.selected, `tp:${cpath}`);
        },
        "data-focus": `tp:${cpath}`,
      },
      h("option", { value: "" }, t("campaign.form.choose_touchpoint")),
      good.length ? h("optgroup", { label: t("canvas.tp.usable") }, good.map((tp) => h("option", { value: tp.id, selected: tp.id === current }, `${tp.name} · ${t(`tp.type.${tp.type}`)}`))) : null,
      bad.length
        ? h("optgroup", { label: t("canvas.tp.unusable") }, bad.map((tp) => h("option", { value: tp.id, selected: tp.id === current, disabled: tp.id !== current }, `${tp.name} — ${reason(tp)}`)))
        : null,
      current && !tpById.has(current) ? h("option", { value: current, selected: true }, t("canvas.tp.missing", { id: current })) : null,
    );
  };

  const channelEditor = (step, ch, i, path) => {
    const cpath = `${path}.channels[${i}]`;
    const channels = step.channels;
    if (!ch || typeof ch !== "object") return h("div", { class: "channel", "data-field": cpath }, t("canvas.summary.unknown", { type: typeof ch }));
    const tp = tpById.get(ch.touchpoint_id);
    const priority = step.mode !== "all";
    const attrs = tp ? (tp.user_attributes || []).map((key) => ({ key, name: (catalogue.get(key) || {}).name || key })) : [];
    const params = ch.params && typeof ch.params === "object" ? ch.params : (ch.params = {});
    const tools = (dir, label, testid) =>
      h("button", { type: "button", class: "icon-btn", title: label, "aria-label": label, "data-testid": testid, "data-focus": `${testid}:${cpath}`, disabled: !channels[i + dir], onClick: () => { moveItem(channels, i, dir); restructure(state.selected, `${testid}:${path}.channels[${i + dir}]`); } }, dir < 0 ? "↑" : "↓");
    return h(
      "div",
      { class: "channel", "data-testid": "channel", "data-field": cpath, "data-field-wrap": cpath },
      h(
        "div",
        { class: "channel-head" },
        priority && channels.length > 1 ? h("span", { class: "prio", title: t("campaign.form.priority") }, `${i + 1}`) : null,
        touchpointSelect(step, ch, cpath),
        tools(-1, t("canvas.channel.up"), "channel-up"),
        tools(1, t("canvas.channel.down"), "channel-down"),
        h("button", { type: "button", class: "icon-btn", title: t("campaign.form.remove_channel"), "aria-label": t("campaign.form.remove_channel"), "data-testid": "channel-remove", onClick: () => { channels.splice(i, 1); restructure(state.selected, "channel-add"); } }, "×"),
      ),
      ch.touchpoint_id ? touchpointState(tp, sid) : null,
      tp
        ? h(
            "div",
            { class: "grid-2 params" },
            (tp.template_params || []).map((p) =>
              field(
                p.name,
                paramControl(p, {
                  loadOptions: () => opts.loadOptions(tp.id, p.key),
                  value: params[p.key],
                  onChange: (v) => {
                    if (v === undefined) delete params[p.key];
                    else params[p.key] = v;
                    changed();
                  },
                  path: `${cpath}.params.${p.key}`,
                  testid: `param-${p.key}`,
                  attributes: attrs,
                }),
                { required: p.required, hint: `${p.key} · ${t(`tp.param.type.${p.type}`)}` },
              ),
            ),
            (tp.template_params || []).length ? null : h("p", { class: "muted small" }, t("campaign.form.no_params")),
          )
        : null,
    );
  };

  const sendEditor = (step, path) => {
    const channels = Array.isArray(step.channels) ? step.channels : null;
    const mode = step.mode === "all" ? "all" : "first_success";
    return [
      timingEditor(step, path),
      isControl(step)
        ? null
        : [
            field(
              t("campaign.form.mode"),
              radios(`${path}:mode`, mode, [["first_success", t("campaign.mode.first_success")], ["all", t("campaign.mode.all")]], (v) => { step.mode = v; restructure(path, `mode-${v}`); }, `${path}.mode`),
              { hint: t(`campaign.mode.${mode}_hint`) },
            ),
            h(
              "div",
              { class: "channels", "data-field": `${path}.channels`, "data-field-wrap": `${path}.channels` },
              touchpoints.some((tp) => usable(tp, sid)) ? null : h("div", { class: "alert alert-warn", "data-testid": "no-touchpoints" }, t("canvas.tp.none_usable")),
              (channels || []).map((ch, i) => channelEditor(step, ch, i, path)),
              h(
                "button",
                {
                  type: "button",
                  class: "btn btn-sm",
                  "data-testid": "channel-add",
                  "data-focus": "channel-add",
                  disabled: (channels || []).length >= MAX_CHANNELS,
                  onClick: () => {
                    if (!Array.isArray(step.channels)) step.channels = [];
                    step.channels.push(newChannel());
                    restructure(path, `tp:${path}.channels[${step.channels.length - 1}]`);
                  },
                },
                "+ ",
                (channels || []).length ? t("canvas.channel.add_fallback") : t("campaign.form.add_channel"),
              ),
            ),
          ],
    ];
  };

  const branchTools = (step, i, path, removable) => {
    const branches = step.branches;
    const move = (dir, label, testid) =>
      h("button", { type: "button", class: "icon-btn", title: label, "aria-label": label, "data-testid": testid, "data-focus": `${testid}:${i + dir}`, disabled: !branches[i + dir], onClick: () => { moveItem(branches, i, dir); restructure(path, `${testid}:${i + dir}`); } }, dir < 0 ? "↑" : "↓");
    return [
      move(-1, t("canvas.branch.up"), "branch-up"),
      move(1, t("canvas.branch.down"), "branch-down"),
      h(
        "button",
        {
          type: "button",
          class: "icon-btn",
          title: t("canvas.branch.remove"),
          "aria-label": t("canvas.branch.remove"),
          "data-testid": "branch-remove",
          disabled: !removable,
          onClick: async () => {
            const next = branches[i] && branches[i].next;
            const n = next && typeof next === "object" ? allSteps(next, "x").length : 0;
            if (n) {
              const ok = await confirmDialog(t("canvas.branch.remove_title"), t("canvas.branch.remove_text", { n }), { danger: true, okLabel: t("canvas.branch.remove") });
              if (!ok) return;
            }
            branches.splice(i, 1);
            restructure(path, "branch-add");
          },
        },
        "×",
      ),
    ];
  };

  const splitEditor = (step, path, kind) => {
    if (!Array.isArray(step.branches)) step.branches = [];
    const branches = step.branches;
    const eventTrigger = doc.trigger && doc.trigger.type === "event";
    return [
      kind === "event" && !eventTrigger ? h("div", { class: "alert alert-warn", "data-testid": "event-split-warning" }, t("canvas.event_split_needs_event")) : null,
      h("p", { class: "muted small" }, t(kind === "event" ? "canvas.split.event_hint" : "canvas.split.audience_hint")),
      h(
        "div",
        { "data-field": `${path}.branches`, "data-field-wrap": `${path}.branches` },
        branches.map((br, i) => {
          const bpath = `${path}.branches[${i}]`;
          if (!br || typeof br !== "object") return h("div", { "data-field": bpath }, t("canvas.summary.unknown", { type: typeof br }));
          return h(
            "div",
            { class: "branch-editor", "data-testid": "branch-editor", "data-field": bpath, "data-field-wrap": bpath },
            h("div", { class: "branch-editor-head" }, h("span", { class: "strong" }, t("canvas.branch.n", { n: i + 1 })), h("span", { class: "spacer" }), branchTools(step, i, path, branches.length > 1)),
            filterEditor({
              get: () => br.filter,
              set: (f) => (br.filter = f),
              path: `${bpath}.filter`,
              kind: kind === "event" ? "property" : "attribute",
              attributes,
              suggest: kind === "event" ? () => (doc.trigger && doc.trigger.event ? opts.eventProperties(doc.trigger.event) : Promise.resolve([])) : null,
              onChange: () => {
                refreshCard(path);
                changed();
              },
            }),
          );
        }),
      ),
      h(
        "button",
        {
          type: "button",
          class: "btn btn-sm",
          "data-testid": "branch-add",
          "data-focus": "branch-add",
          disabled: branches.length >= MAX_SPLIT_BRANCHES,
          onClick: () => {
            branches.push({ filter: blankFilter(kind === "event" ? "property" : "attribute") });
            restructure(path, "branch-add");
          },
        },
        "+ ",
        t("canvas.branch.add"),
        ` (${branches.length}/${MAX_SPLIT_BRANCHES})`,
      ),
      h("p", { class: "muted small branch-else-note" }, t(kind === "event" ? "canvas.split.otherwise_note" : "canvas.split.everyone_else_note")),
    ];
  };

  const abEditor = (step, path) => {
    if (!Array.isArray(step.branches)) step.branches = [];
    const branches = step.branches;
    const sumEl = h("div", { class: "ab-sum", "data-testid": "ab-sum", "aria-live": "polite" });
    const showSum = () => {
      const sum = percentSum(step);
      sumEl.dataset.sum = String(sum);
      sumEl.classList.toggle("ok", sum === 100);
      sumEl.textContent = sum === 100 ? t("canvas.ab.sum_ok") : sum < 100 ? t("canvas.ab.sum_low", { sum, n: 100 - sum }) : t("canvas.ab.sum_high", { sum, n: sum - 100 });
    };
    showSum();
    return [
      h("p", { class: "muted small" }, t("canvas.ab.hint")),
      h(
        "div",
        { "data-field": `${path}.branches`, "data-field-wrap": `${path}.branches` },
        branches.map((br, i) => {
          const bpath = `${path}.branches[${i}]`;
          return h(
            "div",
            { class: "ab-row", "data-testid": "ab-branch", "data-field-wrap": bpath, "data-field": bpath },
            h("span", { class: "ab-letter strong" }, LETTERS[i] || String(i + 1)),
            h(
              "div",
              { class: "input-row ab-input" },
              h("input", {
                type: "number",
                min: 1,
                max: 100,
                step: 1,
                value: br.percent ?? "",
                "aria-label": t("canvas.ab.percent_of", { branch: LETTERS[i] || i + 1 }),
                "data-field": `${bpath}.percent`,
                "data-testid": "ab-percent",
                onInput: (e) => {
                  const raw = e.target.value.trim();
                  const n = Number(raw);
                  br.percent = raw === "" ? null : Number.isFinite(n) ? n : raw;
                  showSum();
                  refreshCard(path);
                  changed();
                },
              }),
              h("span", { class: "muted" }, "%"),
            ),
            h("span", { class: "spacer" }),
            branchTools(step, i, path, branches.length > MIN_AB_BRANCHES),
          );
        }),
      ),
      sumEl,
      h(
        "div",
        { class: "row-actions" },
        h(
          "button",
          {
            type: "button",
            class: "btn btn-sm",
            "data-testid": "branch-add",
            "data-focus": "branch-add",
            disabled: branches.length >= MAX_AB_BRANCHES,
            onClick: () => {
              branches.push({ percent: 0 });
              evenPercents(branches.length).forEach((p, i) => (branches[i].percent = p));
              restructure(path, "branch-add");
            },
          },
          "+ ",
          t("canvas.branch.add"),
          ` (${branches.length}/${MAX_AB_BRANCHES})`,
        ),
        h(
          "button",
          {
            type: "button",
            class: "btn btn-sm btn-ghost",
            "data-testid": "ab-even",
            onClick: () => {
              evenPercents(branches.length).forEach((p, i) => (branches[i].percent = p));
              restructure(path, "ab-even");
            },
          },
          t("canvas.ab.even"),
        ),
      ),
    ];
  };

  const inspector = (path) => {
    const step = stepAt(path);
    if (!step) return null;
    const kind = kindOf(step);
    const heading = h("h3", { tabindex: "-1", class: "inspector-title", "data-focus": "inspector" }, h("span", { class: `node-icon node-icon-${kind}`, "aria-hidden": "true" }), kindLabel(kind), step.id ? h("code", { class: "small muted" }, ` #${step.id}`) : null);
    const nameInput = h("input", {
      type: "text",
      value: step.name ?? "",
      placeholder: t("canvas.step_name_placeholder"),
      "data-field": `${path}.name`,
      "data-testid": "step-name",
      onInput: (e) => {
        // Optional: an empty name is left out, so a step without one stays without.
        if (e.target.value.trim()) step.name = e.target.value;
        else delete step.name;
        refreshCard(path);
        changed();
      },
    });
    // The id names the step in the results (stats by step); new steps get a free one.
    const idInput = h("input", {
      type: "text",
      class: "mono",
      value: step.id ?? "",
      "data-field": `${path}.id`,
      "data-testid": "step-id",
      onInput: (e) => {
        step.id = e.target.value.trim();
        refreshCard(path);
        changed();
      },
    });
    let body;
    if (kind === "send") body = sendEditor(step, path);
    else if (kind === "ab") body = abEditor(step, path);
    else if (kind === "unknown") body = h("div", { class: "alert alert-warn" }, t("canvas.unknown_hint"));
    else body = splitEditor(step, path, kind);
    const panel = h(
      "section",
      { class: "inspector", "data-testid": "inspector", "data-path": path, "data-field": path, "data-field-wrap": path, "aria-label": kindLabel(kind) },
      h("div", { class: "inspector-head" }, heading, h("span", { class: "spacer" }), h("button", { type: "button", class: "icon-btn", title: t("canvas.close_inspector"), "aria-label": t("canvas.close_inspector"), "data-testid": "inspector-close", onClick: deselect }, "×")),
      h(
        "div",
        { class: "name-row" },
        field(t("canvas.step_name"), nameInput, { hint: t("canvas.step_name_hint") }),
        field(t("canvas.step_id"), idInput, { hint: t("canvas.step_id_hint") }),
      ),
      body,
      stepActions(step, path),
    );
    panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !e.defaultPrevented && e.target.tagName !== "SELECT") {
        e.preventDefault();
        deselect();
      }
    });
    return panel;
  };

  // ---- drawing -----------------------------------------------------------------------------

  const render = () => {
    const previousScroll = element.querySelector(".canvas-scroll");
    const scrollLeft = previousScroll ? previousScroll.scrollLeft : 0;
    cards = new Map();
    if (state.selected && !stepAt(state.selected)) state.selected = null;
    const inspectorEl = state.selected ? inspector(state.selected) : null;
    const tree = h("div", { class: "canvas-tree" }, entryNode(), flow({ holder: doc, key: "strategy", path: "strategy" }, inspectorEl));
    const scroll = h("div", { class: "canvas-scroll" }, tree);
    const side = narrow.matches
      ? null
      : h("aside", { class: "inspector-panel" }, inspectorEl || h("div", { class: "inspector-empty muted" }, h("p", {}, t("canvas.pick_hint")), h("p", { class: "small" }, t("canvas.keyboard_hint"))));
    replace(element, scroll, side);
    scroll.scrollLeft = scrollLeft;
    if (inspectorEl) {
      const mine = errorsOf(state.selected);
      const unplaced = mine.length ? applyFieldErrors(inspectorEl, { fieldErrors: mine }) : [];
      if (unplaced.length) inspectorEl.insertBefore(h("ul", { class: "alert alert-error alert-list" }, unplaced.map(fieldErrorItem)), inspectorEl.children[1]);
      if (mine.length && state.focusAfter === "inspector") state.focusAfter = null;
    }
    const chosen = state.selected && cards.get(state.selected);
    if (chosen && !narrow.matches) chosen.card.scrollIntoView({ block: "nearest", inline: "nearest" });
    restoreFocus();
  };

  const restoreFocus = () => {
    const key = state.focusAfter;
    state.focusAfter = null;
    if (!key) return;
    let target = null;
    if (key === "chooser") target = element.querySelector("[data-testid=step-chooser] button");
    else target = element.querySelector(`[data-focus="${CSS.escape(key)}"]`);
    if (!target && key !== "inspector") target = element.querySelector("[data-focus=inspector]");
    if (target && !target.disabled) target.focus();
    else if (target) element.querySelector("[data-focus=inspector]")?.focus();
  };

  const onNarrow = () => {
    // A canvas left behind by navigation stops listening.
    if (element.isConnected) render();
    else narrow.removeEventListener("change", onNarrow);
  };
  narrow.addEventListener("change", onNarrow);
  render();

  return {
    element,
    render,
    /** Show the service's field errors about the strategy; returns those with no step. */
    showErrors(fieldErrors) {
      const paths = stepPaths();
      state.errors = fieldErrors;
      const owned = fieldErrors.filter((e) => owningStep(paths, e.field));
      const firstOwner = owned.length ? owningStep(paths, owned[0].field) : null;
      if (firstOwner && !errorsOf(state.selected || "").length) state.selected = firstOwner;
      state.chooser = null;
      render();
      return fieldErrors.filter((e) => !owningStep(paths, e.field));
    },
    clearErrors() {
      state.errors = [];
      render();
    },
  };
}
