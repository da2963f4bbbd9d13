// The test dialog: inputs generated from the touchpoint's configuration (a field per
// user attribute and per template parameter), then one real request and what it did.

import { ApiError, api, listAll } from "./api.js";
import { add, badge, busy, codeBlock, field, h, modal, replace } from "./dom.js";
import { applyFieldErrors, clearFieldErrors, codedNodes, errorBox } from "./errors.js";
import { t } from "./i18n.js";
import { paramControl } from "./param_inputs.js";

function typedValue(type, raw) {
  const text = String(raw ?? "").trim();
  if (text === "") return undefined;
  if (type === "number") {
    const n = Number(text);
    return Number.isFinite(n) ? n : text;
  }
  if (type === "boolean") return text === "true";
  return text;
}

export async function openTestDialog(ctx, tp, onDone) {
  const base = `/projects/${ctx.pid}/touchpoints/${tp.id}`;
  const [fresh, catalogue] = await Promise.all([api.get(base), listAll(`/projects/${ctx.pid}/attributes`).catch(() => [])]);
  const types = new Map(catalogue.map((a) => [a.key, a]));
  const values = { base, attrs: {}, params: {} };

  // Typed values not sent yet would be lost by closing: ask first.
  let changed = false;
  const m = modal({ title: t("test.title", { name: fresh.name }), size: "lg", testid: "test-dialog", isDirty: () => changed });
  m.body.addEventListener("input", () => (changed = true));
  m.body.addEventListener("change", () => (changed = true));
  const gid = h("input", { type: "number", value: "1", min: 0, "data-field": "users[0].gid", "data-testid": "test-gid" });
  const controls = {};
  const attrFields = fresh.user_attributes.map((key) => {
    const meta = types.get(key) || { type: "string", name: key };
    const path = `users[0].attributes.${key}`;
    let control;
    if (meta.type === "boolean") {
      control = h("select", { "data-field": path, "data-testid": `test-attr-${key}` }, h("option", { value: "" }, "—"), h("option", { value: "true" }, t("common.yes")), h("option", { value: "false" }, t("common.no")));
    } else {
      control = h("input", {
        type: meta.type === "number" ? "number" : meta.type === "date" ? "date" : "text",
        "data-field": path,
        "data-testid": `test-attr-${key}`,
      });
    }
    values.attrs[key] = () => typedValue(meta.type, control.value);
    controls[key] = control;
    return field(`${meta.name || key}`, control, { hint: key });
  });

  // A test user from the data store: its attributes fill the inputs (no retyping).
  const loaded = h("div", { class: "hint", "data-testid": "test-user-loaded", "aria-live": "polite" });
  const loadUser = h("button", { class: "btn btn-sm", type: "button", "data-testid": "test-load-user", title: t("test.load_user_hint") }, t("test.load_user"));
  loadUser.addEventListener(
    "click",
    busy(loadUser, async () => {
      const id = gid.value.trim();
      if (!/^\d+$/.test(id)) {
        loaded.textContent = t("test.gid_needed");
        return;
      }
      try {
        const user = await api.get(`/projects/${ctx.pid}/users/${id}`);
        const attrs = user.attributes || {};
        let filled = 0;
        for (const [key, control] of Object.entries(controls)) {
          const v = attrs[key];
          control.value = v === undefined || v === null ? "" : String(v);
          if (control.value !== "") filled += 1;
        }
        changed = true;
        loaded.textContent = t("test.user_loaded", { gid: id, n: filled, total: Object.keys(controls).length });
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        loaded.textContent = err.status === 404 ? t("test.user_not_found", { gid: id }) : t("test.user_load_failed", { gid: id });
      }
    }),
  );


  const attrChoices = fresh.user_attributes.map((key) => ({ key, name: (types.get(key) || {}).name || key }));
  const paramFields = fresh.template_params.map((p) => {
    const control = paramControl(p, {
      loadOptions: () => api.get(`${base}/params/${encodeURIComponent(p.key)}/options`),
      value: undefined,
      onChange: (v) => (values.params[p.key] = v),
      path: `params.${p.key}`,
      testid: `test-param-${p.key}`,
      attributes: attrChoices,
    });
    return field(p.name, control, { required: p.required, hint: `${p.key} · ${t(`tp.param.type.${p.type}`)}` });
  });

  const result = h("div", { class: "test-result", "data-testid": "test-result" });
  const topErrors = h("div");
  add(m.body, 
    h(
      "div",
      { class: "test-grid" },
      h(
        "section",
        { class: "form-section" },
        h("h3", {}, t("test.user")),
        field(t("test.gid"), h("div", { class: "input-row" }, gid, loadUser), { required: true, extra: loaded }),
        attrFields.length ? attrFields : h("p", { class: "muted small" }, t("test.no_attributes")),
        h("h3", {}, t("test.params")),
        paramFields.length ? paramFields : h("p", { class: "muted small" }, t("test.no_params")),
      ),
      h("section", { class: "form-section result-pane" }, h("h3", {}, t("test.result")), topErrors, result, h("p", { class: "muted small placeholder-text" }, t("test.result_placeholder"))),
    ),
  );

  const send = h("button", { class: "btn btn-primary", type: "button", "data-testid": "test-send" }, t("test.send"));
  send.addEventListener(
    "click",
    busy(send, async () => {
      replace(topErrors);
      replace(result);
      clearFieldErrors(m.body);
      const attributes = {};
      for (const [key, get] of Object.entries(values.attrs)) {
        const v = get();
        if (v !== undefined) attributes[key] = v;
      }
      const params = {};
      for (const [key, v] of Object.entries(values.params)) if (v !== undefined) params[key] = v;
      const gidValue = typedValue("number", gid.value);
      try {
        const out = await api.post(`${base}/test`, { users: [{ gid: gidValue, attributes }], params });
        changed = false;
        m.body.querySelector(".placeholder-text")?.remove();
        replace(result, renderResult(out));
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (err.fieldErrors.length) applyFieldErrors(m.body, err);
        topErrors.appendChild(errorBox(err, { testid: "test-error" }));
      }
      if (onDone) await onDone();
    }),
  );
  add(m.footer, h("button", { class: "btn", type: "button", onClick: () => m.dismiss() }, t("common.close")), send);
}

/** A one-line verdict in the user's language; the service's diagnosis follows in detail. */
function summary(out) {
  if (out.ok) return t("test.sum.ok");
  const status = out.response && out.response.status;
  if (status === null || status === undefined) return t("test.sum.unreachable");
  if (status < 200 || status >= 300) return t("test.sum.http", { status });
  const failed = (out.statuses || []).filter((s) => s.status !== "TOU_SUCC").length;
  if (failed) return t("test.sum.users_failed", { n: failed });
  return t("test.sum.failed");
}

function diagnosisItem(item) {
  if (item && typeof item === "object") return h("li", { title: item.message || null, "data-code": item.code || null }, codedNodes(item, "diagnosis", "error.unknown_finding"));
  return h("li", { lang: "en" }, String(item));
}

/** Why one user got its status, in the reader's language (the endpoint's own words as a value). */
function statusNote(out, s) {
  const note = (out.status_details || []).find((n) => n.gid === s.gid);
  return note ? codedNodes(note, "status_note", "error.unknown_finding") : s.error_msg || "";
}

function renderResult(out) {
  const statuses = out.statuses || [];
  const req = out.request || {};
  const res = out.response || {};
  return h(
    "div",
    { class: "stack" },
    h(
      "div",
      { class: `alert ${out.ok ? "alert-ok" : "alert-error"}`, "data-testid": "test-verdict", "data-ok": out.ok ? "true" : "false" },
      h("div", { class: "alert-title" }, out.ok ? t("test.passed") : t("test.failed")),
      h("div", {}, summary(out)),
      out.order_no ? h("div", { class: "muted small" }, t("test.order_no"), " ", h("code", {}, out.order_no)) : null,
    ),
    (out.diagnosis_details || out.diagnosis || []).length
      ? h("div", { class: "diagnosis", "data-testid": "test-diagnosis" }, h("div", { class: "strong small" }, t("test.diagnosis")), h("ul", {}, (out.diagnosis_details || out.diagnosis).map(diagnosisItem)))
      : null,
    statuses.length
      ? h(
          "table",
          { class: "table table-compact", "data-testid": "test-statuses" },
          h("thead", {}, h("tr", {}, h("th", {}, "gid"), h("th", {}, t("test.status")), h("th", {}, t("test.error_msg")))),
          h(
            "tbody",
            {},
            statuses.map((s) =>
              h(
                "tr",
                {},
                h("td", {}, String(s.gid)),
                h("td", {}, badge(s.status === "TOU_SUCC" ? t("status.TOU_SUCC") : s.status === "TOU_FAIL" ? t("status.TOU_FAIL") : s.status, s.status === "TOU_SUCC" ? "ok" : s.status === "TOU_FAIL" ? "error" : "neutral")),
                h("td", { title: s.error_msg || null, "data-testid": "test-status-note" }, statusNote(out, s)),
              ),
            ),
          ),
        )
      : null,
    h(
      "details",
      { class: "exchange", open: true },
      h("summary", {}, t("test.sent"), req.url ? h("code", { class: "small muted" }, ` POST ${req.url}`) : null),
      req.headers ? codeBlock(req.headers, "test-request-headers") : null,
      codeBlock(req.body ?? "", "test-request-body"),
    ),
    h(
      "details",
      { class: "exchange", open: true },
      h("summary", {}, t("test.received"), res.status !== undefined && res.status !== null ? h("span", { class: "small muted" }, ` HTTP ${res.status}`) : null),
      codeBlock(res.body ?? "", "test-response-body"),
    ),
  );
}
