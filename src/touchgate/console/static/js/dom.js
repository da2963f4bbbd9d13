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

/**
 * The "7/20" under a name input, red past `max`: {el, update(text)}. Characters are
 * counted as people see them (an emoji or a Chinese character is one).
 */
export function charCounter(max, testid) {
  const el = h("span", { class: "counter", "data-testid": testid });
  const update = (text) => {
    const n = [...String(text ?? "").trim()].length;
    el.textContent = `${n}/${max}`;
    el.classList.toggle("over", n > max);
  };
  return { el, update };
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

const openModals = new Set();

/**
 * A modal dialog (native <dialog>). Returns {dialog, body, footer, close, dismiss}.
 * `onClose` runs once however the dialog closes. `isDirty()` says whether the dialog
 * holds changes that closing would throw away: then Esc, the × and a click outside
 * (all `dismiss`) ask first; `close` closes without asking (after a save).
 */
export function modal({ title, size = "md", testid, onClose, isDirty } = {}) {
  const body = h("div", { class: "modal-body" });
  const footer = h("div", { class: "modal-footer" });
  const closeBtn = h("button", { class: "icon-btn", type: "button", "aria-label": t("common.close"), title: t("common.close"), "data-testid": "modal-x" }, "×");
  const dialog = h(
    "dialog",
    { class: `modal modal-${size}`, "data-testid": testid || null },
    h("div", { class: "modal-head" }, h("h2", {}, title), closeBtn),
    body,
    footer,
  );
  let closed = false;
  let asking = false;
  const handle = {};
  const close = () => {
    if (closed) return;
    closed = true;
    openModals.delete(handle);
    if (dialog.open) dialog.close();
    dialog.remove();
    if (onClose) onClose();
  };
  const dismiss = async () => {
    if (closed || asking) return;
    if (isDirty && isDirty()) {
      asking = true;
      const discard = await confirmDialog(t("common.discard_title"), t("common.discard_text"), { danger: true, okLabel: t("common.discard"), cancelLabel: t("common.keep_editing") });
      asking = false;
      if (!discard) return;
    }
    close();
  };
  Object.assign(handle, { dialog, body, footer, close, dismiss });
  closeBtn.addEventListener("click", dismiss);
  // Esc: the browser would close the dialog at once; ask first instead.
  dialog.addEventListener("cancel", (e) => {
    e.preventDefault();
    dismiss();
  });
  dialog.addEventListener("close", close);
  // A click on the backdrop (outside the dialog's box), pressed and released there.
  let downOutside = false;
  const outside = (e) => {
    const r = dialog.getBoundingClientRect();
    return e.target === dialog && (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom);
  };
  dialog.addEventListener("mousedown", (e) => (downOutside = outside(e)));
  dialog.addEventListener("click", (e) => {
    if (downOutside && outside(e)) dismiss();
    downOutside = false;
  });
  openModals.add(handle);
  document.body.appendChild(dialog);
  dialog.showModal();
  return handle;
}

/** Close every open dialog without asking (the page under them is going away). */
export function closeAllModals() {
  for (const m of [...openModals].reverse()) m.close();
}

/**
 * Ask before something that sends, stops or cannot be undone. Resolves to true/false.
 * `message` may be a string or nodes (a summary of what will happen).
 */
export function confirmDialog(title, message, { danger = false, okLabel, cancelLabel, testid = "confirm" } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const m = modal({ title, size: "sm", testid, onClose: () => resolve(answer) });
    append(m.body, [typeof message === "string" ? h("p", {}, message) : message]);
    m.footer.append(
      h("button", { class: "btn", type: "button", "data-testid": "confirm-cancel", onClick: () => m.close() }, cancelLabel || t("common.cancel")),
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

/**
 * A "More" menu: a button that opens a list of actions in the top layer (a popover,
 * so a scrolling table does not clip it). items: [{label, testid, onClick, danger,
 * disabled, title}] (null/false skipped).
 */
export function menu(label, items, { testid } = {}) {
  const button = h("button", { class: "btn btn-sm btn-ghost menu-btn", type: "button", "aria-haspopup": "menu", "aria-expanded": "false", "data-testid": testid || null }, label, h("span", { class: "caret", "aria-hidden": "true" }, "▾"));
  const list = h("div", { class: "menu", popover: "auto", role: "menu" });
  for (const item of items) {
    if (!item) continue;
    const entry = h(
      "button",
      {
        class: `menu-item ${item.danger ? "menu-danger" : ""}`,
        type: "button",
        role: "menuitem",
        "data-testid": item.testid || null,
        disabled: item.disabled || false,
        title: item.title || null,
      },
      item.label,
    );
    entry.addEventListener(
      "click",
      busy(entry, async () => {
        list.hidePopover();
        await item.onClick();
      }),
    );
    list.appendChild(item.disabled && item.title ? h("span", { class: "tip-wrap", title: item.title }, entry) : entry);
  }
  const place = () => {
    const r = button.getBoundingClientRect();
    const w = list.offsetWidth;
    list.style.top = `${Math.min(r.bottom + 4, window.innerHeight - list.offsetHeight - 8)}px`;
    list.style.left = `${Math.max(8, Math.min(r.right - w, window.innerWidth - w - 8))}px`;
  };
  button.addEventListener("click", () => list.togglePopover());
  list.addEventListener("toggle", (e) => {
    const open = e.newState === "open";
    button.setAttribute("aria-expanded", String(open));
    if (open) place();
  });
  return h("span", { class: "menu-wrap" }, button, list);
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

/**
 * Where a page sits: links to the pages above it and the current one's name. items:
 * [{label, href}], the last without href.
 */
export function breadcrumb(items, { label } = {}) {
  const parts = [];
  items.forEach((item, i) => {
    if (i) parts.push(h("span", { class: "sep", "aria-hidden": "true" }, "›"));
    parts.push(item.href ? h("a", { href: item.href }, item.label) : h("span", { class: "current", "data-testid": "breadcrumb-current" }, item.label));
  });
  return h("nav", { class: "breadcrumb", "aria-label": label || t("common.breadcrumb") }, parts);
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
