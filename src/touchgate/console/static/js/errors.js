// Showing the API's errors: a translated heading for the error code, the server's
// (English) message, and each field message next to the input it is about.

import { h } from "./dom.js";
import { t, tMaybe } from "./i18n.js";

/**
 * A field message in the user's language when it is one of the common ones; otherwise
 * the service's English text (it names values and limits we cannot guess).
 */
// Messages with numbers in them, translated with the numbers kept.
const PATTERNS = [
  [/^must be at most (\d+) characters \(got (\d+)\)$/, "msgp.max_chars", ["max", "got"]],
  [/^Input should be greater than or equal to (-?[\d.]+)$/, "msgp.gte", ["n"]],
  [/^Input should be less than or equal to (-?[\d.]+)$/, "msgp.lte", ["n"]],
  [/^String should have at most (\d+) characters?$/, "msgp.max_len", ["n"]],
];

function translateMessage(message) {
  const text = String(message).trim();
  const exact = tMaybe(`msg.${text}`);
  if (exact) return exact;
  for (const [re, key, names] of PATTERNS) {
    const m = text.match(re);
    if (m) return tMaybe(key, Object.fromEntries(names.map((n, i) => [n, m[i + 1]])));
  }
  return null;
}

export function messageEl(tag, props, message) {
  const translated = translateMessage(message);
  return translated ? h(tag, { ...props, title: message }, translated) : h(tag, { ...props, lang: "en" }, message);
}

/** The translated one-line heading for an error from the API (or the network). */
export function errorHeading(err) {
  if (!err || err.status === undefined) return t("error.unexpected");
  return (
    tMaybe(`error.code.${err.code}`) ||
    tMaybe(`error.status.${err.status}`) ||
    (err.status >= 500 ? t("error.status.500") : t("error.generic"))
  );
}

/** A box with the heading, the server's message and every field message. */
export function errorBox(err, { testid = "error-box", showFields = true } = {}) {
  const fields = err && err.fieldErrors ? err.fieldErrors : [];
  const heading = errorHeading(err);
  const message = err && err.message && err.status !== undefined ? err.message : String(err && err.message ? err.message : err);
  return h(
    "div",
    { class: "alert alert-error", role: "alert", "data-testid": testid, "data-code": err && err.code ? err.code : null },
    h("div", { class: "alert-title" }, heading),
    fields.length && showFields
      ? h(
          "ul",
          { class: "alert-list" },
          fields.map((f) => h("li", {}, h("code", {}, f.field), " ", messageEl("span", {}, f.message))),
        )
      : message && message !== heading
        ? h("div", { class: "alert-text", lang: "en" }, message)
        : null,
  );
}

/** "template_params.1.key" (FastAPI) and "template_params[1].key" (ours) are one path. */
export function normalizePath(path) {
  return String(path || "").replace(/\.(\d+)(?=\.|$|\[)/g, "[$1]");
}

function parentPath(path) {
  const m = path.match(/^(.*)(\[\d+\]|\.[^.[\]]+)$/);
  return m ? m[1] : "";
}

export function clearFieldErrors(root) {
  for (const el of root.querySelectorAll(".field-error")) el.remove();
  for (const el of root.querySelectorAll(".invalid")) el.classList.remove("invalid");
}

/**
 * Put each field error next to the element with the matching data-field (or the
 * nearest parent path that has one). Returns the errors that found no place.
 * `alias(path)` may rewrite a path first (e.g. user_attributes[2] → the key's checkbox).
 */
export function applyFieldErrors(root, err, alias = (p) => p) {
  clearFieldErrors(root);
  const unplaced = [];
  let first = null;
  for (const item of err.fieldErrors) {
    let path = alias(normalizePath(item.field));
    let target = null;
    while (path) {
      target = root.querySelector(`[data-field="${CSS.escape(path)}"]`);
      if (target) break;
      path = parentPath(path);
    }
    if (!target) {
      unplaced.push(item);
      continue;
    }
    target.classList.add("invalid");
    // The nearest wrapper: a form field, or a row/section that groups several inputs.
    const anchor = target.closest("[data-field-wrap], .field") || target;
    const msg = messageEl("div", { class: "field-error", "data-error-for": path }, item.message);
    anchor.appendChild(msg);
    if (!first) first = target;
  }
  if (first) {
    first.scrollIntoView({ block: "center" });
    if (typeof first.focus === "function") first.focus({ preventScroll: true });
  }
  return unplaced;
}
