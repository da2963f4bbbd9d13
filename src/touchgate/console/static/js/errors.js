// Showing the API's errors in the reader's language.
//
// The server sends codes, not sentences (see src/touchgate/errors.py):
//   {"error": {"code", "message", "params", "details": [{"field", "code", "message", "params"}]}}
// and the test send adds coded findings. Each code is looked up in i18n/<lang>.json:
//   error.code.<code>    the heading of an error             (error.code.touchpoint_in_use)
//   field_error.<code>   a field detail, shown by the field  (field_error.too_long: "At most {max} characters")
//   diagnosis.<code>     a finding of the channel test       (diagnosis.http_auth)
//   status_note.<code>   why one test user got its status    (status_note.no_status_returned)
//   problem.<code>       what was wrong with an answer, from params.problem (problem.not_json)
// {name} placeholders are filled from the params. Two param names are special: one
// ending in "field" (other_field) holds a field path and shows as that field's label;
// "problem" shows as the problem.<code> text. A field path shows as a label made of
// its segments' texts (field.<segment>, field.<parent>.<segment>, field.<list>[] with {n}):
// template_params[0].key → "Parameter 1 · Key". An unknown code gets a generic text in
// the reader's language; the server's English message stays in a tooltip only.
// A new code needs its text in BOTH en.json and zh-CN.json (tests/test_error_codes.py).
// Audit entries follow the same idea with their own key, audit.entry.<type>.<action>
// filled from the entry's params (access.js; tests/test_audit_codes.py).

import { h } from "./dom.js";
import { t, tMaybe } from "./i18n.js";

// ---------------------------------------------------------------- field labels

// Segments that add nothing to a label (template_params[0].enum.options → Parameter 1 · Options).
const SILENT = new Set(["enum"]);
// Objects keyed by what users named (params.title, plugin_config.api_key): those keys are shown as they are.
const KEYED_BY_USER = new Set(["params", "attributes", "plugin_config", "properties"]);

/** "template_params.1.key" (FastAPI) and "template_params[1].key" (ours) are one path. */
export function normalizePath(path) {
  return String(path || "").replace(/\.(\d+)(?=\.|$|\[)/g, "[$1]");
}

/** template_params[0].key → [{name: "template_params", index: 0}, {name: "key"}]. */
function segments(path) {
  const out = [];
  for (const m of normalizePath(path).matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (m[1] !== undefined) out.push({ name: m[1] });
    else if (out.length) out[out.length - 1].index = Number(m[2]);
  }
  return out;
}

/** A value a message quotes (a name, a key, a count), marked as data, not as text. */
export function valueEl(value) {
  const text = value === null || value === undefined || value === "" ? "—" : String(value);
  return h("span", { class: "msg-value" }, text);
}

/** The label of a field path as nodes: "Parameter 1 · Key" (a key users chose stays as it is). */
export function fieldLabelNodes(path) {
  const parts = [];
  let parent = null;
  let parentIndexed = false;
  let parentShown = false;
  for (const seg of segments(path)) {
    let label;
    if (parent !== null && KEYED_BY_USER.has(parent)) label = h("code", { class: "msg-value" }, seg.name);
    else if (!SILENT.has(seg.name)) {
      label = tMaybe(`field.${parent}.${seg.name}`);
      // "Receipt URL" says "receipt" already: it replaces the parent's label (not "Parameter 1").
      if (label !== null && parentShown && !parentIndexed) parts.pop();
      label = label ?? tMaybe(`field.${seg.name}`);
      if (seg.index !== undefined) {
        const item = tMaybe(`field.${seg.name}[]`, { n: seg.index + 1 });
        label = item ?? `${label ?? seg.name} ${t("field.item[]", { n: seg.index + 1 })}`;
      }
      label = label ?? h("code", { class: "msg-value" }, seg.name);
    }
    if (label !== undefined) parts.push(label);
    parent = seg.name;
    parentIndexed = seg.index !== undefined;
    parentShown = label !== undefined;
  }
  if (!parts.length) return [t("field.body")];
  return parts.flatMap((p, i) => (i ? [" · ", p] : [p]));
}

/** The label of a field path as text (for tooltips and toasts). */
export function fieldLabel(path) {
  return textOf(fieldLabelNodes(path));
}

function textOf(nodes) {
  return nodes.map((n) => (n instanceof Node ? n.textContent : String(n))).join("");
}

// ---------------------------------------------------------------- coded messages

/** `template` as nodes, each {placeholder} replaced by the nodes `nodesFor(name)` gives. */
export function fillTemplate(template, nodesFor) {
  const out = [];
  for (const [i, piece] of template.split(/\{(\w+)\}/).entries()) {
    if (i % 2 === 0) {
      if (piece) out.push(piece);
    } else out.push(...nodesFor(piece));
  }
  return out;
}

/** The text for `key` with its {placeholders} as nodes, or null when there is no text. */
function render(key, params = {}) {
  const template = tMaybe(key);
  if (template === null) return null;
  let usedProblem = false;
  const nodes = fillTemplate(template, (piece) => {
    if (piece === "problem") {
      usedProblem = true;
      return problemNodes(params) ?? [valueEl(params.problem)];
    }
    if (piece.endsWith("field") && typeof params[piece] === "string") return [h("span", { class: "msg-field" }, fieldLabelNodes(params[piece]))];
    // A type's name ("integer", "object") in the reader's words; choices stay as they are.
    if (piece === "expected" && typeof params.expected === "string") return [valueEl(tMaybe(`type_name.${params.expected}`) ?? params.expected)];
    return [valueEl(params[piece])];
  });
  const problem = usedProblem ? null : problemNodes(params);
  return problem ? joinProblem(nodes, problem) : nodes;
}

/** "{text}: {problem}" in the reader's language. */
function joinProblem(text, problem) {
  return fillTemplate(t("error.with_problem"), (piece) => (piece === "text" ? text : problem));
}

function problemNodes(params) {
  if (!params || typeof params.problem !== "string") return null;
  // Without "problem" in them the params cannot lead back here.
  const rest = { ...params, problem: undefined };
  return render(`problem.${params.problem}`, rest) ?? render("problem.other", { ...rest, reason: rest.reason ?? params.problem });
}

/**
 * A coded message ({code, params, message}) from `namespace` (field_error, diagnosis,
 * status_note) as nodes; `fallback` (a key) when its code has no text.
 */
export function codedNodes(item, namespace, fallback) {
  const params = (item && item.params) || {};
  const code = item && item.code;
  return (code ? render(`${namespace}.${code}`, params) : null) ?? render(fallback, params) ?? [t(fallback)];
}

/** A coded message as text. */
export function codedText(item, namespace, fallback = "error.generic") {
  return textOf(codedNodes(item, namespace, fallback));
}

// A detail without a specific code (other domains, older servers): the common English
// sentences still translate; anything else gets the generic "invalid value".
const PATTERNS = [
  [/^must be at most (\d+) characters \(got (\d+)\)$/, "msgp.max_chars", ["max", "got"]],
  [/^Input should be greater than or equal to (-?[\d.]+)$/, "msgp.gte", ["n"]],
  [/^Input should be less than or equal to (-?[\d.]+)$/, "msgp.lte", ["n"]],
  [/^String should have at most (\d+) characters?$/, "msgp.max_len", ["n"]],
];

function translateMessage(message) {
  const text = String(message ?? "").trim();
  const exact = tMaybe(`msg.${text}`);
  if (exact) return exact;
  for (const [re, key, names] of PATTERNS) {
    const m = text.match(re);
    if (m) return tMaybe(key, Object.fromEntries(names.map((n, i) => [n, m[i + 1]])));
  }
  return null;
}

function detailNodes(detail) {
  const specific = detail.code && detail.code !== "invalid" ? render(`field_error.${detail.code}`, detail.params || {}) : null;
  if (specific) return specific;
  const legacy = translateMessage(detail.message);
  return legacy ? [legacy] : codedNodes(detail, "field_error", "field_error.invalid");
}

/**
 * A field message in the reader's language. `message` is a field detail
 * ({field, code, message, params}) or, from older callers, its English text.
 */
export function messageEl(tag, props, message) {
  const detail = message && typeof message === "object" ? message : { message };
  return h(tag, { ...props, title: detail.message || null, "data-code": detail.code || null }, detailNodes(detail));
}

/** One field detail for a list: "Parameter 1 · Key — Key title is used twice (also in Parameter 2 · Key)". */
export function fieldErrorItem(detail) {
  return h(
    "li",
    { "data-error-field": detail.field },
    h("span", { class: "msg-field" }, fieldLabelNodes(detail.field)),
    t("error.label_sep"),
    messageEl("span", {}, detail),
  );
}

// ---------------------------------------------------------------- errors

/** The translated one-line heading for an error from the API (or the network). */
export function errorHeading(err) {
  if (!err || err.status === undefined) return t("error.unexpected");
  const coded = err.code ? render(`error.code.${err.code}`, err.params || {}) : null;
  if (coded) return textOf(coded);
  return tMaybe(`error.status.${err.status}`) || (err.status >= 500 ? t("error.status.500") : t("error.generic"));
}

/** The whole error as one line of text (for toasts): the heading and the first field. */
export function errorText(err) {
  const heading = errorHeading(err);
  const fields = err && err.fieldErrors ? err.fieldErrors : [];
  const problem = err && err.params ? problemNodes(err.params) : null;
  if (!fields.length) return problem ? `${heading}${t("error.label_sep")}${textOf(problem)}` : heading;
  const first = fields[0];
  const more = fields.length > 1 ? t("error.more", { n: fields.length - 1 }) : "";
  return `${heading}${t("error.label_sep")}${fieldLabel(first.field)} ${textOf(detailNodes(first))}${more}`;
}

/**
 * The refusal of a form: the heading, how many fields to fix, and the field messages
 * that found no input to sit by (`unplaced`, from applyFieldErrors).
 */
export function formError(err, unplaced = err.fieldErrors) {
  const fields = err.fieldErrors || [];
  const problem = err.params ? problemNodes(err.params) : null;
  return h(
    "div",
    { class: "alert alert-error", role: "alert", "data-testid": "form-error", "data-code": err.code, title: err.message || null },
    h("div", { class: "alert-title" }, errorHeading(err)),
    fields.length ? h("div", { class: "alert-text" }, t("tp.form.fix_fields", { n: fields.length })) : problem ? h("div", { class: "alert-text" }, problem) : null,
    unplaced.length ? h("ul", { class: "alert-list" }, unplaced.map(fieldErrorItem)) : null,
  );
}

/** A box with the heading and every field message (labels, not paths). */
export function errorBox(err, { testid = "error-box", showFields = true } = {}) {
  const fields = err && err.fieldErrors ? err.fieldErrors : [];
  const known = err && err.status !== undefined;
  const english = known ? err.message : String(err && err.message ? err.message : err);
  const problem = known && err.params ? problemNodes(err.params) : null;
  return h(
    "div",
    { class: "alert alert-error", role: "alert", "data-testid": testid, "data-code": err && err.code ? err.code : null, title: english || null },
    h("div", { class: "alert-title" }, errorHeading(err)),
    problem ? h("div", { class: "alert-text" }, problem) : null,
    fields.length && showFields ? h("ul", { class: "alert-list" }, fields.map(fieldErrorItem)) : null,
  );
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
    // Placed on a parent (a whole parameter row): say which part of it is wrong.
    const exact = path === alias(normalizePath(item.field));
    const msg = exact
      ? messageEl("div", { class: "field-error", "data-error-for": path }, item)
      : h("div", { class: "field-error", "data-error-for": path }, h("span", { class: "msg-field" }, fieldLabelNodes(item.field)), t("error.label_sep"), messageEl("span", {}, item));
    anchor.appendChild(msg);
    if (!first) first = target;
  }
  if (first) {
    first.scrollIntoView({ block: "center" });
    if (typeof first.focus === "function") first.focus({ preventScroll: true });
  }
  return unplaced;
}
