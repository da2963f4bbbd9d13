// Building the page without innerHTML: every piece of data goes in as text, so nothing
// a user typed (a touchpoint name, a response body) can ever run as markup.

import { t } from "./i18n.js";

const PROPS = new Set(["value", "checked", "disabled", "selected", "indeterminate", "open"]);

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (PROPS.has(key) && !(el instanceof SVGElement)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** An HTML element: h("button", {class: "btn", onClick}, "Save"). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

/** An SVG element, for the hand-drawn charts. */
export function s(tag, props, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setProps(el, props);
  append(el, children);
  return el;
}

/** Append children, skipping null/false (Element.append would print "null"). */
export function add(el, ...children) {
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** A labelled form field with a slot for its error. `field` is the API's field path. */
let fieldIds = 0;

export function field(label, control, { hint, field: path, extra, required, testid } = {}) {
  // Tie the label to its input so clicking it focuses the input and screen readers announce it.
  let target = null;
  if (label && control instanceof Element) {
    target = /^(INPUT|SELECT|TEXTAREA)$/.test(control.tagName) ? control : control.querySelector("input:not([type=radio]):not([type=checkbox]), select, textarea");
    if (target && !target.id) target.id = `f${++fieldIds}`;
  }
  return h(
    "div",
    { class: "field", "data-field-wrap": path || null, "data-testid": testid || null },
    label ? h("label", { class: "field-label", for: target ? target.id : null }, label, required ? h("span", { class: "req" }, " *") : null) : null,
    control,
    extra || null,
    hint ? h("div", { class: "hint" }, hint) : null,
  );
}

let toastBox = null;

/** A short message in the corner; errors stay until clicked. */
export function toast(message, kind = "ok") {
  if (!toastBox || !document.body.contains(toastBox)) {
    toastBox = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.appendChild(toastBox);
  }
  const item = h("div", { class: `toast toast-${kind}`, "data-testid": "toast" }, message);
  item.addEventListener("click", () => item.remove());
  toastBox.appendChild(item);
  if (kind !== "error") setTimeout(() => item.remove(), 4000);
}

/**
 * A modal dialog (native <dialog>). Returns {dialog, body, footer, close}.
 * `onClose` runs once however the dialog closes (button, Esc).
 */
export function modal({ title, size = "md", testid, onClose } = {}) {
  const body = h("div", { class: "modal-body" });
  const footer = h("div", { class: "modal-footer" });
  const closeBtn = h("button", { class: "icon-btn", type: "button", "aria-label": t("common.close"), title: t("common.close") }, "×");
  const dialog = h(
    "dialog",
    { class: `modal modal-${size}`, "data-testid": testid || null },
    h("div", { class: "modal-head" }, h("h2", {}, title), closeBtn),
    body,
    footer,
  );
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    if (dialog.open) dialog.close();
    dialog.remove();
    if (onClose) onClose();
  };
  closeBtn.addEventListener("click", close);
  dialog.addEventListener("close", close);
  document.body.appendChild(dialog);
  dialog.showModal();
  return { dialog, body, footer, close };
}

/** Ask before something irreversible. Resolves to true/false. */
export function confirmDialog(title, message, { danger = false, okLabel } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const m = modal({ title, size: "sm", testid: "confirm", onClose: () => resolve(answer) });
    m.body.appendChild(h("p", {}, message));
    m.footer.append(
      h("button", { class: "btn", type: "button", onClick: () => m.close() }, t("common.cancel")),
      h(
        "button",
        {
          class: danger ? "btn btn-danger" : "btn btn-primary",
          type: "button",
          "data-testid": "confirm-ok",
          onClick: () => {
            answer = true;
            m.close();
          },
        },
        okLabel || t("common.ok"),
      ),
    );
  });
}

/** A button that shows a busy state while its async handler runs. */
export function busy(button, fn) {
  return async (...args) => {
    if (button.dataset.busy) return;
    button.dataset.busy = "1";
    const wasDisabled = button.disabled;
    button.disabled = true;
    button.classList.add("is-busy");
    try {
      await fn(...args);
    } finally {
      delete button.dataset.busy;
      button.disabled = wasDisabled;
      button.classList.remove("is-busy");
    }
  };
}

export function badge(text, kind = "neutral", props = {}) {
  return h("span", { class: `badge badge-${kind}`, ...props }, text);
}

/** Pretty JSON (or the raw text) for the "what was sent / what came back" panes. */
export function codeBlock(value, testid) {
  let text;
  if (typeof value === "string") {
    try {
      text = JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      text = value;
    }
  } else text = JSON.stringify(value, null, 2);
  return h("pre", { class: "code", "data-testid": testid || null }, text ?? "");
}

export function emptyState(title, text, action) {
  return h("div", { class: "empty" }, h("div", { class: "empty-title" }, title), text ? h("p", {}, text) : null, action || null);
}

export function spinner() {
  return h("div", { class: "loading", "aria-busy": "true" }, h("span", { class: "spin" }), t("common.loading"));
}

/** Run `fn` once the user stops typing in `input` for `ms` (a search box, a filter). */
export function onTypingPause(input, fn, ms = 300) {
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  });
}
