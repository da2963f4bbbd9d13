// Choosing an enum value: one select, and a second one only when the chosen option is a
// category with children (category → option). Options without children are values
// themselves, so no empty second select is ever shown. For the test dialog and the
// campaign editor's parameter inputs.

import { h, replace } from "./dom.js";
import { t } from "./i18n.js";

/** Options endpoint answers [{code, name, children?}] (tolerate {items} too). */
export function optionList(data) {
  return Array.isArray(data) ? data : (data && (data.items || data.options)) || [];
}

/**
 * A picker for `options` ([{code, name, children?}]) starting at `value` (a code of
 * either level). Returns {el, value()}; `onChange(code|undefined)` runs on every choice.
 */
export function enumPicker(options, { label, value, onChange } = {}) {
  const parentOf = options.find((o) => (o.children || []).some((c) => c.code === value));
  const offered = Boolean(parentOf) || options.some((o) => o.code === value && !(o.children && o.children.length));
  const first = h(
    "select",
    { "aria-label": label || null, "data-testid": "enum-level1" },
    h("option", { value: "" }, t("test.choose")),
    options.map((o) =>
      h(
        "option",
        { value: o.code, selected: parentOf ? parentOf.code === o.code : o.code === value },
        o.children && o.children.length ? `${o.name} ›` : t("enum.option", { name: o.name, code: o.code }),
      ),
    ),
    // A saved code the options no longer offer stays visible (the service will say so).
    value !== undefined && value !== null && value !== "" && !offered
      ? h("option", { value: String(value), selected: true }, t("params.not_offered", { code: String(value) }))
      : null,
  );
  const second = h("select", { "aria-label": label || null, "data-testid": "enum-level2" });
  const el = h("div", { class: "cascade" }, first);
  const children = () => {
    const chosen = options.find((o) => o.code === first.value);
    return (chosen && chosen.children) || [];
  };
  const current = () => (children().length ? second.value || undefined : first.value || undefined);
  const fillSecond = (selected) => {
    const kids = children();
    if (kids.length) {
      replace(second, h("option", { value: "" }, t("test.choose")), kids.map((c) => h("option", { value: c.code, selected: c.code === selected }, t("enum.option", { name: c.name, code: c.code }))));
      if (!second.isConnected) el.appendChild(second);
    } else second.remove();
    el.classList.toggle("cascade-two", kids.length > 0);
  };
  first.addEventListener("change", () => {
    fillSecond(undefined);
    if (onChange) onChange(current());
  });
  second.addEventListener("change", () => onChange && onChange(current()));
  fillSecond(value);
  return { el, value: current };
}
