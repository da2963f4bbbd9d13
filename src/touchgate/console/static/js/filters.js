// The filter builder: conditions combined in nested and/or groups, on user attributes (an
// audience, an audience split's branches) or on the triggering event's properties (an
// event trigger, an event split's branches). It edits the campaign's JSON in place, so
// what it does not touch is saved exactly as it was loaded.

import { h, replace } from "./dom.js";
import { t } from "./i18n.js";

export const OPERATORS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"];
const NO_VALUE = new Set(["exists", "not_exists"]);
const LIST = new Set(["in", "not_in"]);
const ORDERED = new Set(["gt", "gte", "lt", "lte"]);
// Groups nest at most this deep (the service refuses deeper ones).
const MAX_DEPTH = 5;
const PROPERTY_TYPES = ["string", "number", "boolean"];

export function isGroup(filter) {
  return Boolean(filter) && typeof filter === "object" && ("conditions" in filter || "op" in filter);
}

export function blankCondition(kind) {
  return kind === "property" ? { property: "", operator: "eq", value: "" } : { attribute: "", operator: "eq", value: "" };
}

export function blankFilter(kind) {
  return { op: "and", conditions: [blankCondition(kind)] };
}

function typedValue(type, text) {
  const raw = String(text ?? "").trim();
  if (type === "number") {
    const n = Number(raw);
    // Not a number: kept as typed so the service names the field.
    return raw !== "" && Number.isFinite(n) ? n : raw;
  }
  if (type === "boolean") return raw === "true" ? true : raw === "false" ? false : raw;
  return raw;
}

function listValue(type, text) {
  return String(text ?? "")
    .split(/[,，\n]/)
    .map((v) => v.trim())
    .filter(Boolean)
    .map((v) => typedValue(type, v));
}

function valueText(value) {
  if (Array.isArray(value)) return value.map(String).join(", ");
  return value === undefined || value === null ? "" : String(value);
}

function inferredType(value) {
  const first = Array.isArray(value) ? value[0] : value;
  if (typeof first === "boolean") return "boolean";
  if (typeof first === "number") return "number";
  return null;
}

/** A short text for a branch label: the first condition, and how many more. */
export function filterSummary(filter, catalogue) {
  const conditions = [];
  const walk = (f) => {
    if (!f || typeof f !== "object") return;
    if (isGroup(f)) (f.conditions || []).forEach(walk);
    else conditions.push(f);
  };
  walk(filter);
  if (!conditions.length) return t("filter.empty");
  const c = conditions[0];
  const subject = c.attribute !== undefined ? ((catalogue && catalogue.get(c.attribute)) || {}).name || c.attribute : c.property;
  const op = OPERATORS.includes(c.operator) ? t(`campaign.op.${c.operator}`) : String(c.operator ?? "");
  const first = [subject || "…", op, NO_VALUE.has(c.operator) ? "" : valueText(c.value)].filter(Boolean).join(" ");
  return conditions.length > 1 ? t("filter.summary_more", { first, n: conditions.length - 1 }) : first;
}

let editors = 0;

/**
 * A filter editor.
 * - get()/set(filter): the filter in the campaign's JSON (set replaces it, e.g. when a
 *   single condition becomes a group, or when an optional filter is removed);
 * - path: its API field path, e.g. "strategy.branches[0].filter";
 * - kind: "attribute" (attributes: the catalogue) or "property" (suggest(): a promise of
 *   [{key, type}] the triggering event carries);
 * - optional: the filter may be absent (an event trigger's), so the last condition can go;
 * - onChange(): after every change, for summaries elsewhere.
 */
export function filterEditor({ get, set, path, kind, attributes = [], suggest, optional = false, onChange = () => {}, testid = "filter" }) {
  const root = h("div", { class: "filter-editor", "data-testid": testid });
  const catalogue = new Map(attributes.map((a) => [a.key, a]));
  const listId = `filter-props-${++editors}`;
  const datalist = kind === "property" ? h("datalist", { id: listId }) : null;
  let known = new Map();
  // The value type chosen for a property condition: the service takes a property's type
  // from the value compared with, so the choice decides how the typed text is read.
  const chosenType = new WeakMap();
  // Asked again whenever the editor gets focus: the event the suggestions are for may
  // have changed since (suggest() returns the same promise while it has not).
  let suggested = null;
  const refreshSuggestions = () => {
    if (kind !== "property" || !suggest) return;
    const pending = suggest();
    if (!pending || pending === suggested) return;
    suggested = pending;
    pending
      .then((items) => {
        if (suggested !== pending) return;
        known = new Map(items.map((i) => [i.key, i.type]));
        replace(datalist, items.map((i) => h("option", { value: i.key }, t(`filter.type.${i.type}`))));
      })
      .catch(() => {});
  };
  refreshSuggestions();
  root.addEventListener("focusin", refreshSuggestions);

  const changed = () => onChange();
  const rerender = () => {
    render();
    changed();
  };

  const typeOf = (c) => {
    if (kind === "attribute") return ((catalogue.get(c.attribute) || {}).type) || "string";
    return chosenType.get(c) || (PROPERTY_TYPES.includes(c.type) ? c.type : null) || inferredType(c.value) || known.get(c.property) || "string";
  };

  const valueControl = (c, cpath) => {
    const type = typeOf(c);
    const common = { "data-field": `${cpath}.value`, "data-testid": "filter-value", "aria-label": t("campaign.filter.value") };
    if (NO_VALUE.has(c.operator)) return h("span", { class: "cond-novalue" });
    if (LIST.has(c.operator)) {
      return h("input", {
        ...common,
        type: "text",
        value: valueText(c.value),
        placeholder: t("campaign.filter.list_placeholder"),
        onInput: (e) => {
          c.value = listValue(type, e.target.value);
          changed();
        },
      });
    }
    if (type === "boolean") {
      return h(
        "select",
        {
          ...common,
          onChange: (e) => {
            c.value = typedValue("boolean", e.target.value);
              changed();
          },
        },
        h("option", { value: "" }, "—"),
        h("option", { value: "true", selected: c.value === true }, t("common.yes")),
        h("option", { value: "false", selected: c.value === false }, t("common.no")),
      );
    }
    return h("input", {
      ...common,
      type: type === "number" ? "number" : type === "date" ? "date" : "text",
      step: type === "number" ? "any" : null,
      value: valueText(c.value),
      onInput: (e) => {
        c.value = typedValue(type, e.target.value);
        changed();
      },
    });
  };

  /** Keep what the user typed when the operator or the type changes the value's shape. */
  const reshape = (c) => {
    const type = typeOf(c);
    if (NO_VALUE.has(c.operator)) delete c.value;
    else if (LIST.has(c.operator)) c.value = Array.isArray(c.value) ? c.value.map((v) => typedValue(type, v)) : listValue(type, valueText(c.value));
    else c.value = typedValue(type, Array.isArray(c.value) ? valueText(c.value[0]) : valueText(c.value));
  };

  const operatorsFor = (type, current) =>
    OPERATORS.filter((op) => op === current || !((type === "boolean" && (ORDERED.has(op) || op === "contains")) || ((type === "number" || type === "date") && op === "contains")));

  const conditionRow = (c, cpath, remove) => {
    const type = typeOf(c);
    const subject =
      kind === "attribute"
        ? h(
            "select",
            {
              "data-field": `${cpath}.attribute`,
              "data-testid": "filter-attribute",
              "aria-label": t("campaign.filter.attribute"),
              onChange: (e) => {
                c.attribute = e.target.value;
                reshape(c);
                rerender();
              },
            },
            h("option", { value: "" }, t("campaign.filter.attribute")),
            attributes.map((a) => h("option", { value: a.key, selected: c.attribute === a.key }, a.name && a.name !== a.key ? `${a.name} (${a.key})` : a.key)),
            c.attribute && !catalogue.has(c.attribute) ? h("option", { value: c.attribute, selected: true }, c.attribute) : null,
          )
        : h(
            "div",
            { class: "prop-pick" },
            h("input", {
              type: "text",
              value: c.property ?? "",
              list: listId,
              placeholder: t("filter.property"),
              "aria-label": t("filter.property"),
              "data-field": `${cpath}.property`,
              "data-testid": "filter-property",
              onInput: (e) => {
                c.property = e.target.value.trim();
                      changed();
              },
              onChange: (e) => {
                // A property the events carry brings its type along.
                const seen = known.get(e.target.value.trim());
                if (seen && seen !== typeOf(c)) {
                  chosenType.set(c, seen);
                  reshape(c);
                  rerender();
                }
              },
            }),
            h(
              "select",
              {
                class: "prop-type",
                "aria-label": t("filter.value_type"),
                title: t("filter.value_type"),
                "data-testid": "filter-type",
                onChange: (e) => {
                  chosenType.set(c, e.target.value);
                  reshape(c);
                  rerender();
                },
              },
              PROPERTY_TYPES.map((ty) => h("option", { value: ty, selected: type === ty }, t(`filter.type.${ty}`))),
            ),
          );
    return h(
      "div",
      { class: "cond", "data-testid": "filter-condition", "data-field-wrap": cpath },
      subject,
      h(
        "select",
        {
          "data-field": `${cpath}.operator`,
          "data-testid": "filter-operator",
          "aria-label": t("filter.operator"),
          onChange: (e) => {
            c.operator = e.target.value;
            reshape(c);
            rerender();
          },
        },
        operatorsFor(type, c.operator).map((op) => h("option", { value: op, selected: c.operator === op }, t(`campaign.op.${op}`))),
        OPERATORS.includes(c.operator) ? null : h("option", { value: String(c.operator), selected: true }, String(c.operator)),
      ),
      valueControl(c, cpath),
      h(
        "button",
        {
          class: "icon-btn",
          type: "button",
          title: t("campaign.filter.remove"),
          "aria-label": t("campaign.filter.remove"),
          "data-testid": "filter-remove",
          disabled: !remove,
          onClick: remove || null,
        },
        "×",
      ),
    );
  };

  /**
   * A group. `replaceSelf(next)` swaps the group in its parent (null removes it);
   * `single` marks the root condition shown as a group of one (its path is the filter's).
   */
  const groupView = (group, gpath, depth, replaceSelf, single) => {
    const conditions = single ? [single] : group.conditions || [];
    const toGroup = () => {
      // The first structural change turns a single root condition into a real group.
      if (!single) return group;
      const made = { op: "and", conditions: [single] };
      set(made);
      return made;
    };
    const canRemove = (i) => depth > 0 || conditions.length > 1 || optional;
    const removeAt = (i) => () => {
      const g = toGroup();
      g.conditions.splice(i, 1);
      if (!g.conditions.length) replaceSelf(null);
      rerender();
    };
    return h(
      "div",
      { class: depth ? "group group-nested" : "group", "data-field": single ? null : gpath, "data-field-wrap": single ? null : gpath, "data-testid": "filter-group" },
      h(
        "div",
        { class: "group-head" },
        h("span", { class: "small muted" }, kind === "property" ? t("filter.events_matching") : t("campaign.filter.match")),
        h(
          "select",
          {
            class: "select-sm",
            "data-field": single ? null : `${gpath}.op`,
            "data-testid": "filter-op",
            "aria-label": t("campaign.filter.match"),
            onChange: (e) => {
              toGroup().op = e.target.value;
              rerender();
            },
          },
          ["and", "or"].map((op) => h("option", { value: op, selected: (group.op || "and") === op }, t(`campaign.filter.${op}`))),
        ),
        depth > 0
          ? h("button", { class: "btn btn-xs btn-danger-ghost", type: "button", "data-testid": "filter-remove-group", onClick: () => { replaceSelf(null); rerender(); } }, t("filter.remove_group"))
          : null,
      ),
      conditions.map((c, i) => {
        const cpath = single ? gpath : `${gpath}.conditions[${i}]`;
        if (isGroup(c)) {
          return groupView(c, cpath, depth + 1, (next) => {
            if (next === null) group.conditions.splice(i, 1);
            else group.conditions[i] = next;
          });
        }
        return conditionRow(c, cpath, canRemove(i) ? removeAt(i) : null);
      }),
      h(
        "div",
        { class: "row-actions group-actions" },
        h("button", { class: "btn btn-xs", type: "button", "data-testid": "filter-add", onClick: () => { toGroup().conditions.push(blankCondition(kind)); rerender(); } }, "+ ", t("campaign.filter.add")),
        depth + 1 < MAX_DEPTH
          ? h(
              "button",
              {
                class: "btn btn-xs",
                type: "button",
                "data-testid": "filter-add-group",
                onClick: () => {
                  const g = toGroup();
                  g.conditions.push({ op: g.op === "or" ? "and" : "or", conditions: [blankCondition(kind)] });
                  rerender();
                },
              },
              "+ ",
              t("campaign.filter.add_group"),
            )
          : null,
      ),
    );
  };

  const render = () => {
    const filter = get();
    let view;
    if (filter === undefined || filter === null) {
      view = h(
        "div",
        { class: "filter-none", "data-field": path },
        h("span", { class: "muted small" }, kind === "property" ? t("filter.no_event_filter") : t("filter.none")),
        h("button", { class: "btn btn-xs", type: "button", "data-testid": "filter-add", onClick: () => { set(blankFilter(kind)); rerender(); } }, "+ ", t("campaign.filter.add")),
      );
    } else if (isGroup(filter)) {
      view = groupView(filter, path, 0, () => set(optional ? undefined : blankFilter(kind)));
    } else {
      view = groupView({ op: "and" }, path, 0, () => set(optional ? undefined : blankFilter(kind)), filter);
    }
    replace(root, view, datalist);
  };
  render();
  return root;
}
