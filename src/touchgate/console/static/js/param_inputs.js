// Typed inputs for a touchpoint's template values, shared by the test dialog and the
// campaign canvas: a date picker, a number, a cascading enum (one or two levels, options
// from the service) and text with an "insert attribute" helper for {{attr}} placeholders.

import { h, replace } from "./dom.js";
import { enumPicker, optionList } from "./enum_pick.js";
import { errorBox } from "./errors.js";
import { t } from "./i18n.js";

/** What an input's text means for a parameter of `type`: undefined when empty. */
export function typedParam(type, raw) {
  const text = String(raw ?? "");
  if (text.trim() === "") return undefined;
  if (type === "number") {
    const n = Number(text.trim());
    // A text that is not a number is kept as typed, so the service can name it.
    return Number.isFinite(n) ? n : text;
  }
  if (type === "date") return text.trim();
  return text;
}

/**
 * The input for one template parameter.
 * - loadOptions(): a promise of the enum's options (cached by the caller);
 * - value: the current value (kept as is until the user changes it);
 * - onChange(value): called on every change by the user (undefined when cleared);
 * - path: the API field path (data-field), so the service's errors land here;
 * - attributes: [{key, name}] the text helper offers as {{key}} (the touchpoint's own).
 */
export function paramControl(param, { loadOptions, value, onChange, path, testid, attributes = [] }) {
  if (param.type === "enum") return enumControl(param, { loadOptions, value, onChange, path, testid });
  if (param.type === "text") return textControl(param, { value, onChange, path, testid, attributes });
  const input = h("input", {
    type: param.type === "date" ? "date" : param.type === "number" ? "number" : "text",
    step: param.type === "number" ? "any" : null,
    value: value === undefined || value === null ? "" : String(value),
    "data-field": path,
    "data-testid": testid,
    onInput: (e) => onChange(typedParam(param.type, e.target.value)),
  });
  return input;
}

function textControl(param, { value, onChange, path, testid, attributes }) {
  const input = h("textarea", {
    rows: 2,
    class: "text-param",
    "data-field": path,
    "data-testid": testid,
    placeholder: t("test.text_placeholder"),
    onInput: (e) => onChange(typedParam("text", e.target.value)),
  });
  input.value = value === undefined || value === null ? "" : String(value);
  if (!attributes.length) return input;
  // Where the caret was when the input lost focus to the helper.
  let caret = null;
  input.addEventListener("blur", () => (caret = [input.selectionStart, input.selectionEnd]));
  const helper = h(
    "select",
    {
      class: "select-sm insert-attr",
      "aria-label": t("params.insert_attribute"),
      title: t("params.insert_attribute_hint"),
      "data-testid": `${testid}-insert`,
      onChange: (e) => {
        const key = e.target.value;
        e.target.value = "";
        if (!key) return;
        const [start, end] = caret || [input.value.length, input.value.length];
        const token = `{{${key}}}`;
        input.value = input.value.slice(0, start) + token + input.value.slice(end);
        const at = start + token.length;
        input.focus();
        input.setSelectionRange(at, at);
        onChange(typedParam("text", input.value));
      },
    },
    h("option", { value: "" }, t("params.insert_attribute")),
    attributes.map((a) => h("option", { value: a.key }, a.name && a.name !== a.key ? `${a.name} · {{${a.key}}}` : `{{${a.key}}}`)),
  );
  return h("div", { class: "text-param-wrap" }, input, h("div", { class: "text-param-tools" }, helper));
}

function enumControl(param, { loadOptions, value, onChange, path, testid }) {
  const wrap = h("div", { class: "enum-pick", "data-field": path, "data-testid": testid }, h("span", { class: "muted small" }, t("common.loading")));
  const load = async () => {
    let options;
    try {
      options = optionList(await loadOptions());
    } catch (err) {
      replace(wrap, errorBox(err, { testid: "options-error" }));
      return;
    }
    const picker = enumPicker(options, { label: param.name, value, onChange });
    replace(wrap, picker.el);
    if (options.length > 100) wrap.appendChild(h("div", { class: "hint" }, t("tp.enum.count", { n: options.length })));
  };
  load();
  return wrap;
}
