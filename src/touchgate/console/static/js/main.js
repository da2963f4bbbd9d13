// The console's shell: sign-in, the header (project switcher, navigation, language,
// sign-out) and a hash router that renders one view at a time.

import { ApiError, forgetKey, listAll, request, setUnauthorizedHandler, storeKey, storedKey } from "./api.js";
import { busy, closeAllModals, emptyState, h, replace, spinner, toast } from "./dom.js";
import { errorBox } from "./errors.js";
import { LANGS, detectLang, lang, setLang, t } from "./i18n.js";
import { setZone } from "./time.js";

const PROJECT_KEY = "touchgate.project";
const root = document.getElementById("app");

// The pages of a project, one line each: its navigation entry (`nav.<name>`), the
// first hash segments after #/p/{pid}/ that open it, and how it renders
// (`rest`: the segments after #/p/{pid}/). The first page is the project's home.
const PAGES = [
  { name: "touchpoints", paths: ["touchpoints"], render: (ctx) => import("./touchpoints.js").then((m) => m.renderTouchpoints(ctx)) },
  { name: "campaigns", paths: ["campaigns", "s", "campaign"], render: (ctx, rest) => import("./campaigns.js").then((m) => m.renderCampaigns(ctx, rest)) },
  { name: "protection", paths: ["protection"], render: (ctx) => import("./protection.js").then((m) => m.renderProtection(ctx)) },
  { name: "keys", paths: ["keys"], admin: true, render: (ctx) => import("./access.js").then((m) => m.renderKeys(ctx)) },
  { name: "audit", paths: ["audit"], admin: true, render: (ctx) => import("./access.js").then((m) => m.renderAudit(ctx)) },
];

/**
 * What the signed-in key may do, for the pages to offer only that: `admin` (manage
 * the project), `writer` (operators too: campaigns, imports, the blocklist) and
 * `spaceIds` (null: every space). Without an answer the API still decides.
 */
function reach(me) {
  const role = me ? me.role : "admin";
  return { admin: role === "admin", writer: role !== "viewer", spaceIds: me && me.space_ids ? new Set(me.space_ids) : null };
}

/** Whether the signed-in key may use a page (keys and the audit log need an admin). */
function canUse(page) {
  return !page.admin || !session.me || session.me.role === "admin";
}

function pageFor(segment) {
  return PAGES.find((page) => page.paths.includes(segment)) || PAGES[0];
}

export const session = {
  projects: [],
  /** The signed-in key ({name, role, project_id, space_ids}; GET /api-keys/current). */
  me: null,
  /** Bumped on every navigation so slow responses of an old view are dropped. */
  generation: 0,
};

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parseHash() {
  const path = location.hash.replace(/^#/, "") || "/";
  const parts = path.split("?")[0].split("/").filter(Boolean);
  return parts;
}

async function signIn(key, remember) {
  // The key is valid when it can list projects; that list also feeds the switcher.
  const data = await request("GET", "/projects", undefined, { key, query: { limit: 1000 } });
  session.me = await request("GET", "/api-keys/current", undefined, { key });
  storeKey(key, remember);
  session.projects = data.items;
}

function signOut() {
  forgetKey();
  session.projects = [];
  session.me = null;
  navigate("#/login");
}

setUnauthorizedHandler(() => {
  forgetKey();
  toast(t("auth.expired"), "error");
  navigate("#/login");
});

function langSwitch() {
  const select = h(
    "select",
    {
      class: "lang-select",
      "aria-label": t("app.language"),
      title: t("app.language"),
      "data-testid": "lang-switch",
      onChange: async (e) => {
        await setLang(e.target.value, { persist: true });
        route();
      },
    },
    LANGS.map((code) => h("option", { value: code, selected: code === lang() }, code === "zh-CN" ? "简体中文" : "English")),
  );
  return select;
}

function renderLogin(message) {
  const keyInput = h("input", {
    type: "password",
    id: "api-key",
    autocomplete: "current-password",
    placeholder: t("auth.key_placeholder"),
    "data-testid": "login-key",
    required: true,
  });
  const remember = h("input", { type: "checkbox", id: "remember", "data-testid": "login-remember" });
  const errorSlot = h("div", { class: "login-error" });
  if (message) errorSlot.appendChild(h("div", { class: "alert alert-info" }, message));
  const submit = h("button", { class: "btn btn-primary btn-block", type: "submit", "data-testid": "login-submit" }, t("auth.sign_in"));
  const form = h(
    "form",
    { class: "login-card", "data-testid": "login-form" },
    h("div", { class: "brand brand-lg" }, h("img", { src: "/console/favicon.svg", alt: "" }), "Touchgate"),
    h("p", { class: "muted" }, t("auth.intro")),
    h("div", { class: "field" }, h("label", { class: "field-label", for: "api-key" }, t("auth.key")), keyInput),
    h("label", { class: "check" }, remember, t("auth.remember")),
    errorSlot,
    submit,
    h("div", { class: "login-foot" }, langSwitch()),
  );
  form.addEventListener(
    "submit",
    busy(submit, async (e) => {
      e.preventDefault();
      const key = keyInput.value.trim();
      replace(errorSlot);
      if (!key) {
        errorSlot.appendChild(h("div", { class: "alert alert-error", role: "alert" }, t("auth.key_required")));
        return;
      }
      try {
        await signIn(key, remember.checked);
        navigate("#/");
      } catch (err) {
        const box = err instanceof ApiError && err.status === 401
          ? h("div", { class: "alert alert-error", role: "alert", "data-testid": "login-error" }, t("auth.invalid_key"))
          : errorBox(err, { testid: "login-error" });
        errorSlot.appendChild(box);
      }
    }),
  );
  // The page never reloads on submit, even while a previous attempt is still running.
  form.addEventListener("submit", (e) => e.preventDefault(), { capture: true });
  replace(root, h("div", { class: "login-page" }, form));
  root.classList.remove("boot");
  keyInput.focus();
}

function header(active, pid) {
  const projectSelect = h(
    "select",
    {
      class: "project-select",
      "aria-label": t("nav.project"),
      "data-testid": "project-switch",
      onChange: (e) => {
        localStorage.setItem(PROJECT_KEY, e.target.value);
        navigate(`#/p/${e.target.value}/${active || PAGES[0].name}`);
      },
    },
    session.projects.map((p) => h("option", { value: p.id, selected: String(p.id) === String(pid) }, p.name)),
  );
  const link = (name) =>
    h("a", { class: active === name ? "nav-link active" : "nav-link", href: `#/p/${pid}/${name}`, "data-testid": `nav-${name}` }, t(`nav.${name}`));
  return h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", href: "#/" }, h("img", { src: "/console/favicon.svg", alt: "" }), "Touchgate"),
    session.projects.length
      ? h("div", { class: "project-pick" }, h("span", { class: "muted small" }, t("nav.project")), projectSelect)
      : null,
    pid ? h("nav", { class: "nav", "aria-label": t("nav.pages") }, PAGES.filter(canUse).map((page) => link(page.name))) : null,
    h("div", { class: "topbar-tools" }, langSwitch(), h("button", { class: "btn btn-ghost", type: "button", "data-testid": "sign-out", onClick: signOut }, t("auth.sign_out"))),
  );
}

function shell(active, pid) {
  const view = h("main", { class: "view", id: "view" }, spinner());
  const top = header(active, pid);
  replace(root, top, view);
  root.classList.remove("boot");
  const nav = top.querySelector(".nav");
  if (nav) keepInView(nav);
  return view;
}

/**
 * On a phone the nav scrolls sideways: show its current entry, and fade the edges
 * that have more entries beyond them.
 */
function keepInView(nav) {
  const edges = () => {
    nav.classList.toggle("more-before", nav.scrollLeft > 1);
    nav.classList.toggle("more-after", nav.scrollLeft + nav.clientWidth < nav.scrollWidth - 1);
  };
  const active = nav.querySelector(".active");
  if (active && nav.scrollWidth > nav.clientWidth) nav.scrollLeft = active.offsetLeft + active.offsetWidth / 2 - nav.clientWidth / 2;
  edges();
  nav.addEventListener("scroll", edges, { passive: true });
  new ResizeObserver(edges).observe(nav);
}

async function ensureProjects() {
  if (!session.projects.length) {
    session.projects = await listAll("/projects");
  }
  if (!session.me) session.me = await request("GET", "/api-keys/current");
}

function defaultProject() {
  const saved = localStorage.getItem(PROJECT_KEY);
  const found = session.projects.find((p) => String(p.id) === saved);
  return (found || session.projects[0] || {}).id;
}

async function route() {
  const generation = ++session.generation;
  // A dialog belongs to the page it was opened on.
  closeAllModals();
  const parts = parseHash();
  if (parts[0] === "login") {
    renderLogin();
    return;
  }
  if (!storedKey()) {
    renderLogin();
    return;
  }
  try {
    await ensureProjects();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // the handler shows the login
    replace(root, h("main", { class: "view" }, errorBox(err)));
    return;
  }
  if (generation !== session.generation) return;
  if (parts[0] !== "p" || !parts[1]) {
    const pid = defaultProject();
    if (pid === undefined) {
      const view = shell(null, null);
      replace(view, emptyState(t("projects.none_title"), t("projects.none_text")));
      return;
    }
    navigate(`#/p/${pid}/${PAGES[0].name}`);
    return;
  }
  const pid = Number(parts[1]);
  const project = session.projects.find((p) => p.id === pid);
  if (!project) {
    const view = shell(null, null);
    replace(view, emptyState(t("projects.unknown_title"), t("projects.unknown_text", { id: parts[1] }), h("a", { class: "btn", href: "#/" }, t("common.back"))));
    return;
  }
  localStorage.setItem(PROJECT_KEY, String(pid));
  setZone(project.timezone);
  const page = pageFor(parts[2] || "");
  const view = shell(page.name, pid);
  if (!canUse(page)) {
    // Said before the API would refuse: this key cannot use the page.
    replace(view, emptyState(t(`nav.${page.name}`), t("access.admin_only", { name: session.me.name, role: t(`keys.role.${session.me.role}`) }), h("a", { class: "btn", href: `#/p/${pid}/${PAGES[0].name}` }, t("common.back"))));
    view.firstChild.dataset.testid = "admin-only";
    return;
  }
  const ctx = { pid, project, view, navigate, isCurrent: () => generation === session.generation, ...reach(session.me) };
  try {
    await page.render(ctx, parts.slice(2));
  } catch (err) {
    if (!ctx.isCurrent()) return;
    if (err instanceof ApiError && err.status === 401) return;
    replace(view, errorBox(err));
    if (!(err instanceof ApiError)) console.error(err);
  }
}

async function start() {
  try {
    await setLang(detectLang());
  } catch (err) {
    // Without the dictionaries there is no text to show but this (both languages).
    replace(root, h("div", { class: "alert alert-error" }, "Touchgate: the console cannot load its texts (控制台无法加载文本). ", String(err && err.message ? err.message : err)));
    return;
  }
  window.addEventListener("hashchange", route);
  await route();
}

start();
