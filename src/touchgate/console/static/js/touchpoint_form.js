// The add/edit touchpoint dialog: basic information and send parameters (user
// attributes from the project's catalogue, template parameters with enum options).
// The service validates; its field errors appear next to the inputs they name.

import { ApiError, api, listAll, upload } from "./api.js";
import { add, badge, busy, charCounter, field, h, modal, replace, toast } from "./dom.js";
import { applyFieldErrors, clearFieldErrors, codedText, errorBox, fieldLabel, formError } from "./errors.js";
import { t } from "./i18n.js";

const NAME_MAX = 15;
const MANY_OPTIONS = 100;
const PARAM_TYPES = ["text", "number", "date", "enum"];
const DEFAULT_RETRY = [5, 30, 120, 600, 1800, 3600];

/** A number from an input, or the raw text so the service names the field when it isn't one. */
function num(value) {
  const text = String(value ?? "").trim();
  if (text === "") return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : text;
}

export function leafCount(options) {
  let n = 0;
  for (const o of options || []) n += o.children && o.children.length ? o.children.length : 1;
  return n;
}

function blankParam() {
  return { key: "", name: "", type: "text", required: false, enum: { source: "manual", options: [], url: "" } };
}

function stateFrom(tp) {
  const receipt = (tp && tp.receipt) || { mode: "sync" };
  return {
    name: tp ? tp.name : "",
    type: tp ? tp.type : "notification",
    transport: tp ? tp.transport : "http",
    url: (tp && tp.url) || "",
    token: "",
    clearToken: false,
    tokenSet: Boolean(tp && tp.token_set),
    batch_size: tp ? String(tp.batch_size ?? "") : "200",
    description: (tp && tp.description) || "",
    timeout_seconds: tp ? String(tp.timeout_seconds ?? "") : "15",
    retry_schedule: ((tp && tp.retry_schedule) || DEFAULT_RETRY).join(", "),
    receipt: {
      mode: receipt.mode || "sync",
      url: receipt.url || "",
      poll_seconds: String(receipt.poll_seconds ?? 300),
      timeout_minutes: String(receipt.timeout_minutes ?? 1440),
    },
    user_attributes: [...((tp && tp.user_attributes) || [])],
    template_params: ((tp && tp.template_params) || []).map((p) => ({
      key: p.key,
      name: p.name,
      type: p.type,
      required: Boolean(p.required),
      enum: {
        source: (p.enum && p.enum.source) || "manual",
        url: (p.enum && p.enum.url) || "",
        options: ((p.enum && p.enum.options) || []).map((o) => ({
          code: o.code,
          name: o.name,
          children: (o.children || []).map((c) => ({ code: c.code, name: c.name })),
        })),
      },
    })),
    plugin_id: tp && tp.plugin_id ? String(tp.plugin_id) : "",
    plugin_config: { ...((tp && tp.plugin_config) || {}) },
    pluginSecrets: {},
  };
}

function paramBody(p) {
  const out = { key: p.key.trim(), name: p.name.trim(), type: p.type, required: p.required };
  if (p.type === "enum") {
    out.enum =
      p.enum.source === "api"
        ? { source: "api", url: p.enum.url.trim() }
        : {
            source: "manual",
            options: p.enum.options.map((o) => {
              const opt = { code: o.code.trim(), name: o.name.trim() };
              if (o.children.length) opt.children = o.children.map((c) => ({ code: c.code.trim(), name: c.name.trim() }));
              return opt;
            }),
          };
  }
  return out;
}

function bodyFrom(st, { editing, plugin }) {
  const body = {
    name: st.name.trim(),
    type: st.type,
    transport: st.transport,
    description: st.description.trim() || null,
    user_attributes: [...st.user_attributes],
    template_params: st.template_params.map(paramBody),
  };
  const batch = num(st.batch_size);
  if (batch !== undefined) body.batch_size = batch;
  const timeout = num(st.timeout_seconds);
  if (timeout !== undefined) body.timeout_seconds = timeout;
  const retry = st.retry_schedule.trim();
  if (retry) body.retry_schedule = retry.split(/[\s,，]+/).filter(Boolean).map(num);
  body.receipt =
    st.receipt.mode === "async"
      ? {
          mode: "async",
          url: st.receipt.url.trim(),
          poll_seconds: num(st.receipt.poll_seconds),
          timeout_minutes: num(st.receipt.timeout_minutes),
        }
      : { mode: "sync" };
  if (st.transport === "http") {
    body.url = st.url.trim();
    if (st.token) body.token = st.token;
    else if (editing && st.clearToken) body.token = null;
  } else {
    body.plugin_id = num(st.plugin_id) ?? null;
    const config = {};
    for (const f of (plugin && plugin.config_fields) || []) {
      if (f.secret) {
        if (st.pluginSecrets[f.key]) config[f.key] = st.pluginSecrets[f.key];
      } else if (st.plugin_config[f.key] !== undefined && st.plugin_config[f.key] !== "") {
        config[f.key] = f.type === "number" ? num(st.plugin_config[f.key]) : st.plugin_config[f.key];
      }
    }
    body.plugin_config = config;
  }
  return body;
}

export async function openTouchpointForm(ctx, touchpoint, onSaved) {
  const { pid } = ctx;
  const editing = Boolean(touchpoint);
  const [attributes, plugins] = await Promise.all([
    listAll(`/projects/${pid}/attributes`).catch((err) => ({ error: err })),
    listAll(`/projects/${pid}/plugins`).catch(() => []),
  ]);
  const st = stateFrom(touchpoint);
  let submitted = null;
  // What saving would send, to tell whether closing throws changes away.
  const snapshot = () => JSON.stringify([bodyFrom(st, { editing, plugin: plugins.find((pl) => String(pl.id) === st.plugin_id) }), st.pluginSecrets, st.token, st.clearToken]);
  const pristine = snapshot();

  const m = modal({
    title: editing ? t("tp.form.edit_title", { name: touchpoint.name }) : t("tp.form.add_title"),
    size: "lg",
    testid: "tp-form",
    isDirty: () => snapshot() !== pristine,
  });
  const topErrors = h("div", { class: "form-errors", "data-testid": "form-errors" });

  // ---- basic information -------------------------------------------------------------
  const counter = charCounter(NAME_MAX, "name-count");
  const updateCounter = () => counter.update(st.name);
  const nameInput = h("input", {
    type: "text",
    value: st.name,
    "data-field": "name",
    "data-testid": "tp-name",
    placeholder: t("tp.form.name_placeholder"),
    onInput: (e) => {
      st.name = e.target.value;
      updateCounter();
    },
  });
  updateCounter();

  const typeSelect = h(
    "select",
    { "data-field": "type", "data-testid": "tp-type", disabled: editing, onChange: (e) => (st.type = e.target.value) },
    ["notification", "benefit", "other"].map((v) => h("option", { value: v, selected: st.type === v }, t(`tp.type.${v}`))),
  );

  const transportSlot = h("div");
  const transportRadios = h(
    "div",
    { class: "segmented", "data-field": "transport", role: "radiogroup" },
    ["http", "plugin"].map((v) =>
      h(
        "label",
        { class: "seg" },
        h("input", {
          type: "radio",
          name: "transport",
          value: v,
          checked: st.transport === v,
          "data-testid": `tp-transport-${v}`,
          onChange: () => {
            st.transport = v;
            renderTransport();
          },
        }),
        h("span", {}, t(`tp.transport.${v}`)),
      ),
    ),
  );

  const renderTransport = () => {
    if (st.transport === "http") {
      const tokenInput = h("input", {
        type: "password",
        autocomplete: "new-password",
        "data-field": "token",
        "data-testid": "tp-token",
        value: st.token,
        placeholder: st.tokenSet ? t("tp.form.token_keep") : t("tp.form.token_optional"),
        onInput: (e) => (st.token = e.target.value),
      });
      replace(
        transportSlot,
        field(t("tp.form.url"), h("input", {
          type: "url",
          value: st.url,
          "data-field": "url",
          "data-testid": "tp-url",
          placeholder: "https://",
          onInput: (e) => (st.url = e.target.value),
        }), { required: true, hint: t("tp.form.url_hint") }),
        field(t("tp.form.token"), tokenInput, {
          hint: st.tokenSet ? t("tp.form.token_set_hint") : t("tp.form.token_hint"),
          extra: editing && st.tokenSet
            ? h("label", { class: "check small" }, h("input", {
                type: "checkbox",
                checked: st.clearToken,
                "data-testid": "tp-token-clear",
                onChange: (e) => (st.clearToken = e.target.checked),
              }), t("tp.form.token_clear"))
            : null,
        }),
      );
    } else {
      renderPlugin();
    }
  };

  // Upload a plugin package here (the seed's 上传插件): on success it is chosen; a
  // refused package lists every problem the service found.
  const uploadSlot = h("div", { class: "upload-result" });
  const uploadControl = () => {
    const input = h("input", { type: "file", accept: ".zip,application/zip", class: "visually-hidden", "data-testid": "plugin-file" });
    const label = h("label", { class: "btn btn-sm", "data-testid": "plugin-upload" }, t("tp.form.upload_plugin"), input);
    input.addEventListener("change", async () => {
      const file = input.files && input.files[0];
      if (!file) return;
      replace(uploadSlot, h("span", { class: "muted small" }, t("tp.form.uploading", { file: file.name })));
      const form = new FormData();
      form.append("file", file, file.name);
      try {
        const plugin = await upload(`/projects/${pid}/plugins`, form);
        plugins.push(plugin);
        st.plugin_id = String(plugin.id);
        replace(uploadSlot);
        toast(t("tp.form.plugin_uploaded", { name: plugin.name, version: plugin.version || "" }));
        renderPlugin();
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        replace(uploadSlot, errorBox(err, { testid: "plugin-upload-error" }));
      } finally {
        input.value = "";
      }
    });
    return h("div", { class: "upload-row" }, label, h("span", { class: "hint" }, t("tp.form.upload_hint")));
  };

  const renderPlugin = () => {
    if (!plugins.length) {
      replace(transportSlot, h("div", { class: "alert alert-info", "data-field": "plugin_id" }, t("tp.form.no_plugins")), uploadControl(), uploadSlot);
      return;
    }
    const plugin = plugins.find((p) => String(p.id) === st.plugin_id);
    const select = h(
      "select",
      {
        "data-field": "plugin_id",
        "data-testid": "tp-plugin",
        onChange: (e) => {
          st.plugin_id = e.target.value;
          renderPlugin();
        },
      },
      h("option", { value: "" }, t("tp.form.choose_plugin")),
      plugins.map((p) => h("option", { value: p.id, selected: String(p.id) === st.plugin_id }, `${p.name} ${p.version || ""}`)),
    );
    const configFields = ((plugin && plugin.config_fields) || []).map((f) => pluginField(f));
    replace(transportSlot, field(t("tp.form.plugin"), select, { required: true, extra: uploadControl() }), uploadSlot, configFields.length ? h("div", { class: "grid-2" }, configFields) : null);
  };

  const pluginField = (f) => {
    const path = `plugin_config.${f.key}`;
    const current = st.plugin_config[f.key] ?? f.default ?? "";
    let control;
    if (f.secret) {
      // Secrets never come back; the API says only whether one is set ("<key>_set").
      const isSet = Boolean(st.plugin_config[`${f.key}_set`]);
      control = h("input", {
        type: "password",
        autocomplete: "new-password",
        "data-field": path,
        placeholder: editing && isSet ? t("tp.form.token_keep") : "",
        onInput: (e) => (st.pluginSecrets[f.key] = e.target.value),
      });
    } else if (f.type === "enum") {
      control = h(
        "select",
        { "data-field": path, onChange: (e) => (st.plugin_config[f.key] = e.target.value) },
        h("option", { value: "" }, "—"),
        (f.options || []).map((o) => h("option", { value: o, selected: String(current) === String(o) }, o)),
      );
    } else if (f.type === "boolean") {
      control = h("label", { class: "check" }, h("input", {
        type: "checkbox",
        "data-field": path,
        checked: current === true,
        onChange: (e) => (st.plugin_config[f.key] = e.target.checked),
      }), f.label || f.key);
    } else {
      control = h("input", {
        type: f.type === "number" ? "number" : "text",
        value: current,
        "data-field": path,
        onInput: (e) => (st.plugin_config[f.key] = e.target.value),
      });
    }
    return field(f.type === "boolean" ? null : f.label || f.key, control, { required: f.required, hint: f.secret ? t("tp.form.secret_hint") : null });
  };

  const receiptSlot = h("div");
  const renderReceipt = () => {
    const radios = h(
      "div",
      { class: "segmented", "data-field": "receipt.mode" },
      ["sync", "async"].map((v) =>
        h(
          "label",
          { class: "seg" },
          h("input", {
            type: "radio",
            name: "receipt-mode",
            value: v,
            checked: st.receipt.mode === v,
            "data-testid": `tp-receipt-${v}`,
            onChange: () => {
              st.receipt.mode = v;
              renderReceipt();
            },
          }),
          h("span", {}, t(`tp.receipt.${v}`)),
        ),
      ),
    );
    replace(
      receiptSlot,
      field(t("tp.form.receipt_mode"), radios, { hint: t(`tp.receipt.${st.receipt.mode}_hint`) }),
      st.receipt.mode === "async"
        ? h(
            "div",
            { class: "grid-3 sub-panel" },
            field(t("tp.form.receipt_url"), h("input", {
              type: "url",
              value: st.receipt.url,
              "data-field": "receipt.url",
              "data-testid": "tp-receipt-url",
              placeholder: "https://",
              onInput: (e) => (st.receipt.url = e.target.value),
            }), { required: true }),
            field(t("tp.form.poll_seconds"), h("input", {
              type: "number",
              min: 30,
              value: st.receipt.poll_seconds,
              "data-field": "receipt.poll_seconds",
              onInput: (e) => (st.receipt.poll_seconds = e.target.value),
            }), { hint: t("tp.form.poll_hint") }),
            field(t("tp.form.receipt_timeout"), h("input", {
              type: "number",
              min: 1,
              value: st.receipt.timeout_minutes,
              "data-field": "receipt.timeout_minutes",
              onInput: (e) => (st.receipt.timeout_minutes = e.target.value),
            }), { hint: t("tp.form.receipt_timeout_hint") }),
          )
        : null,
    );
  };

  const basic = h(
    "section",
    { class: "form-section" },
    h("h3", {}, t("tp.form.basic")),
    h(
      "div",
      { class: "grid-2" },
      field(t("tp.form.name"), h("div", { class: "with-counter" }, nameInput, counter.el), { required: true, hint: t("tp.form.name_hint") }),
      field(t("tp.form.type"), typeSelect, { required: true, hint: editing ? t("tp.form.type_fixed") : t("tp.form.type_hint") }),
    ),
    field(t("tp.form.transport"), transportRadios),
    transportSlot,
    h(
      "div",
      { class: "grid-3" },
      field(t("tp.form.batch_size"), h("input", {
        type: "number",
        min: 1,
        max: 500,
        value: st.batch_size,
        "data-field": "batch_size",
        "data-testid": "tp-batch",
        onInput: (e) => (st.batch_size = e.target.value),
      }), { required: true, hint: t("tp.form.batch_hint") }),
      field(t("tp.form.timeout"), h("input", {
        type: "number",
        min: 1,
        max: 60,
        value: st.timeout_seconds,
        "data-field": "timeout_seconds",
        onInput: (e) => (st.timeout_seconds = e.target.value),
      }), { hint: t("tp.form.timeout_hint") }),
      field(t("tp.form.retry"), h("input", {
        type: "text",
        value: st.retry_schedule,
        "data-field": "retry_schedule",
        onInput: (e) => (st.retry_schedule = e.target.value),
      }), { hint: t("tp.form.retry_hint") }),
    ),
    receiptSlot,
    field(t("tp.form.description"), h("textarea", {
      rows: 2,
      "data-field": "description",
      "data-testid": "tp-description",
      onInput: (e) => (st.description = e.target.value),
    }, st.description)),
  );

  // ---- send parameters ---------------------------------------------------------------
  const attrSlot = h("div", { "data-field": "user_attributes", "data-field-wrap": "user_attributes" });
  const renderAttributes = () => {
    if (attributes && attributes.error) {
      replace(attrSlot, errorBox(attributes.error));
      return;
    }
    const known = new Set(attributes.map((a) => a.key));
    const rows = [
      ...attributes,
      // Keys saved earlier but no longer in the catalogue stay visible so they can be removed.
      ...st.user_attributes.filter((k) => !known.has(k)).map((k) => ({ key: k, name: k, missing: true })),
    ];
    if (!rows.length) {
      replace(attrSlot, h("div", { class: "muted" }, t("tp.form.no_attributes")));
      return;
    }
    replace(
      attrSlot,
      h(
        "div",
        { class: "attr-grid" },
        rows.map((a) => {
          const checked = st.user_attributes.includes(a.key);
          const blocked = a.sensitive && !checked;
          return h(
            "label",
            {
              class: `attr ${blocked ? "is-disabled" : ""}`,
              title: a.sensitive ? t("tp.form.attr_sensitive_reason") : a.missing ? t("tp.form.attr_missing") : a.key,
              "data-field": `user_attr:${a.key}`,
              "data-field-wrap": `user_attr:${a.key}`,
            },
            h("input", {
              type: "checkbox",
              checked,
              disabled: blocked,
              "data-testid": `attr-${a.key}`,
              onChange: (e) => {
                if (e.target.checked) st.user_attributes.push(a.key);
                else st.user_attributes = st.user_attributes.filter((k) => k !== a.key);
              },
            }),
            h("span", { class: "attr-name" }, a.name || a.key),
            h("code", { class: "attr-key" }, a.key),
            a.kind === "identity" ? badge(t("tp.form.identity"), "info") : null,
            a.sensitive ? badge(t("tp.form.sensitive"), "muted") : null,
            a.missing ? badge(t("tp.form.missing"), "warn") : null,
          );
        }),
      ),
    );
  };

  const paramsSlot = h("div", { "data-field": "template_params", "data-field-wrap": "template_params" });
  const renderParams = () => {
    replace(
      paramsSlot,
      st.template_params.length
        ? h(
            "div",
            { class: "params" },
            h(
              "div",
              { class: "param-head" },
              h("span", {}, t("tp.param.key")),
              h("span", {}, t("tp.param.name")),
              h("span", {}, t("tp.param.type")),
              h("span", {}, t("tp.param.required")),
              h("span", {}),
            ),
            st.template_params.map((p, i) => paramRow(p, i)),
          )
        : h("div", { class: "muted" }, t("tp.param.none")),
      h(
        "button",
        {
          class: "btn btn-sm",
          type: "button",
          "data-testid": "param-add",
          onClick: () => {
            st.template_params.push(blankParam());
            renderParams();
            const rows = paramsSlot.querySelectorAll("[data-testid=param-row]");
            rows[rows.length - 1].querySelector("input").focus();
          },
        },
        "+ ",
        t("tp.param.add"),
      ),
    );
  };

  const paramRow = (p, i) => {
    const base = `template_params[${i}]`;
    const row = h(
      "div",
      { class: "param", "data-testid": "param-row", "data-field-wrap": base, "data-field": base },
      h(
        "div",
        { class: "param-line" },
        h("div", { "data-field-wrap": `${base}.key` }, h("span", { class: "cell-label" }, t("tp.param.key")), h("input", {
          type: "text",
          value: p.key,
          placeholder: "couponId",
          "aria-label": t("tp.param.key"),
          "data-field": `${base}.key`,
          "data-testid": "param-key",
          onInput: (e) => (p.key = e.target.value),
        })),
        h("div", { "data-field-wrap": `${base}.name` }, h("span", { class: "cell-label" }, t("tp.param.name")), h("input", {
          type: "text",
          value: p.name,
          placeholder: t("tp.param.name_placeholder"),
          "aria-label": t("tp.param.name"),
          "data-field": `${base}.name`,
          "data-testid": "param-name",
          onInput: (e) => (p.name = e.target.value),
        })),
        h("div", { "data-field-wrap": `${base}.type` }, h("span", { class: "cell-label" }, t("tp.param.type")), h(
          "select",
          {
            "aria-label": t("tp.param.type"),
            "data-field": `${base}.type`,
            "data-testid": "param-type",
            onChange: (e) => {
              p.type = e.target.value;
              renderParams();
            },
          },
          PARAM_TYPES.map((v) => h("option", { value: v, selected: p.type === v }, t(`tp.param.type.${v}`))),
        )),
        h("label", { class: "check", "data-field-wrap": `${base}.required` }, h("input", {
          type: "checkbox",
          checked: p.required,
          "data-field": `${base}.required`,
          "data-testid": "param-required",
          onChange: (e) => (p.required = e.target.checked),
        }), h("span", { class: "small" }, t("tp.param.required_short"))),
        h(
          "div",
          { class: "param-tools" },
          h("button", {
            class: "icon-btn",
            type: "button",
            title: t("tp.param.up"),
            "aria-label": t("tp.param.up"),
            disabled: i === 0,
            onClick: () => {
              st.template_params.splice(i - 1, 0, st.template_params.splice(i, 1)[0]);
              renderParams();
            },
          }, "↑"),
          h("button", {
            class: "icon-btn",
            type: "button",
            title: t("tp.param.remove"),
            "aria-label": t("tp.param.remove"),
            "data-testid": "param-remove",
            onClick: () => {
              st.template_params.splice(i, 1);
              renderParams();
            },
          }, "×"),
        ),
      ),
      p.type === "enum" ? enumPanel(p, base) : null,
    );
    return row;
  };

  const enumPanel = (p, base) => {
    const e = p.enum;
    const ebase = `${base}.enum`;
    const panel = h("div", { class: "enum-panel", "data-field": ebase, "data-field-wrap": ebase });
    const render = () => {
      const source = h(
        "div",
        { class: "segmented segmented-sm", "data-field": `${ebase}.source` },
        ["manual", "api"].map((v) =>
          h(
            "label",
            { class: "seg" },
            h("input", {
              type: "radio",
              name: `${ebase}-source-${Math.random().toString(36).slice(2)}`,
              checked: e.source === v,
              "data-testid": `enum-source-${v}`,
              onChange: () => {
                e.source = v;
                render();
              },
            }),
            h("span", {}, t(`tp.enum.source.${v}`)),
          ),
        ),
      );
      replace(panel, h("div", { class: "enum-head" }, h("span", { class: "small strong" }, t("tp.enum.options")), source), e.source === "api" ? apiOptions(p, ebase) : manualOptions(e, ebase, render));
    };
    render();
    return panel;
  };

  const manualOptions = (e, ebase, rerender) => {
    const total = leafCount(e.options);
    const optRow = (o, path, list, j, level) =>
      h(
        "div",
        { class: `opt opt-l${level}`, "data-testid": level === 1 ? "enum-option" : "enum-child", "data-field-wrap": path },
        h("input", {
          type: "text",
          value: o.code,
          placeholder: t("tp.enum.code"),
          "aria-label": t("tp.enum.code"),
          "data-field": `${path}.code`,
          "data-testid": "opt-code",
          onInput: (ev) => (o.code = ev.target.value),
        }),
        h("input", {
          type: "text",
          value: o.name,
          placeholder: t("tp.enum.name"),
          "aria-label": t("tp.enum.name"),
          "data-field": `${path}.name`,
          "data-testid": "opt-name",
          onInput: (ev) => (o.name = ev.target.value),
        }),
        level === 1
          ? h("button", {
              class: "btn btn-xs btn-ghost",
              type: "button",
              "data-testid": "opt-add-child",
              title: t("tp.enum.add_child_hint"),
              onClick: () => {
                o.children.push({ code: "", name: "" });
                rerender();
              },
            }, "+ ", t("tp.enum.add_child"))
          : h("span"),
        h("button", {
          class: "icon-btn",
          type: "button",
          title: t("tp.enum.remove"),
          "aria-label": t("tp.enum.remove"),
          onClick: () => {
            list.splice(j, 1);
            rerender();
          },
        }, "×"),
      );
    return h(
      "div",
      { class: "opts", "data-field": `${ebase}.options`, "data-field-wrap": `${ebase}.options` },
      e.options.map((o, j) => {
        const path = `${ebase}.options[${j}]`;
        return h(
          "div",
          { class: "opt-group", "data-field": path },
          optRow(o, path, e.options, j, 1),
          o.children.length
            ? h(
                "div",
                { class: "opt-children", "data-field": `${path}.children`, "data-field-wrap": `${path}.children` },
                o.children.map((c, k) => optRow(c, `${path}.children[${k}]`, o.children, k, 2)),
              )
            : null,
        );
      }),
      h(
        "div",
        { class: "opts-foot" },
        h("button", {
          class: "btn btn-xs",
          type: "button",
          "data-testid": "opt-add",
          onClick: () => {
            e.options.push({ code: "", name: "", children: [] });
            rerender();
          },
        }, "+ ", t("tp.enum.add")),
        h("span", { class: "muted small" }, t("tp.enum.count", { n: total })),
      ),
      total > MANY_OPTIONS ? h("div", { class: "alert alert-warn small", "data-testid": "many-options" }, t("tp.enum.too_many", { n: total })) : null,
    );
  };

  // The options API is tried as typed, before the touchpoint is saved (signed with
  // the saved touchpoint's secret when editing).
  const apiOptions = (p, ebase) => {
    const preview = h("div", { class: "opt-preview", "data-testid": "options-preview" });
    const hint = h("div", { class: "hint" });
    const loadBtn = h("button", { class: "btn btn-sm", type: "button", "data-testid": "options-load" }, t("tp.enum.load"));
    const refresh = () => {
      loadBtn.disabled = !p.enum.url.trim();
      hint.textContent = loadBtn.disabled ? t("tp.enum.need_url") : t("tp.enum.load_hint");
    };
    loadBtn.addEventListener(
      "click",
      busy(loadBtn, async () => {
        if (!p.key.trim()) {
          replace(preview, h("div", { class: "field-error", "data-testid": "options-error" }, t("tp.enum.need_key")));
          return;
        }
        replace(preview, h("span", { class: "muted small" }, t("common.loading")));
        try {
          const data = await api.post(`/projects/${pid}/touchpoints/options-preview`, {
            url: p.enum.url.trim(),
            param: p.key.trim(),
            name: p.name.trim() || undefined,
            touchpoint_id: editing ? touchpoint.id : undefined,
          });
          replace(preview, optionsPreview(data));
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          replace(preview, errorBox(err, { testid: "options-error" }));
        }
      }),
    );
    const input = h("input", {
      type: "url",
      value: p.enum.url,
      placeholder: "https://",
      "data-field": `${ebase}.url`,
      "data-testid": "enum-url",
      onInput: (ev) => {
        p.enum.url = ev.target.value;
        refresh();
      },
    });
    refresh();
    return h("div", {}, field(t("tp.enum.api_url"), h("div", { class: "input-row" }, input, loadBtn), { extra: hint }), preview);
  };

  const sendParams = h(
    "section",
    { class: "form-section" },
    h("h3", {}, t("tp.form.send_params")),
    h("div", { class: "sub-title" }, t("tp.form.user_attributes"), h("span", { class: "muted small" }, t("tp.form.user_attributes_hint"))),
    attrSlot,
    h("div", { class: "sub-title" }, t("tp.form.template_params"), h("span", { class: "muted small" }, t("tp.form.template_params_hint"))),
    paramsSlot,
  );

  renderTransport();
  renderReceipt();
  renderAttributes();
  renderParams();
  add(m.body, topErrors, basic, sendParams);

  // ---- save ------------------------------------------------------------------------------
  const save = h("button", { class: "btn btn-primary", type: "button", "data-testid": "tp-save" }, editing ? t("common.save") : t("tp.form.create"));
  save.addEventListener(
    "click",
    busy(save, async () => {
      replace(topErrors);
      clearFieldErrors(m.body);
      const plugin = plugins.find((pl) => String(pl.id) === st.plugin_id);
      const body = bodyFrom(st, { editing, plugin });
      submitted = body;
      try {
        const saved = editing
          ? await api.patch(`/projects/${pid}/touchpoints/${touchpoint.id}`, body)
          : await api.post(`/projects/${pid}/touchpoints`, body);
        m.close();
        for (const w of (saved && saved.warning_details) || []) toast(t("tp.form.warning_toast", { text: `${fieldLabel(w.field)}${t("error.label_sep")}${codedText(w, "field_error")}` }), "warn");
        if (!editing && saved && saved.signing_secret) showSecret(saved);
        else toast(t("tp.form.saved", { name: saved ? saved.name : body.name }));
        await onSaved();
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        const alias = (path) => {
          const mm = path.match(/^user_attributes\[(\d+)\]$/);
          if (mm && submitted.user_attributes[Number(mm[1])] !== undefined) return `user_attr:${submitted.user_attributes[Number(mm[1])]}`;
          return path;
        };
        const unplaced = err.fieldErrors.length ? applyFieldErrors(m.body, err, alias) : [];
        topErrors.appendChild(formError(err, unplaced));
        if (!err.fieldErrors.length) topErrors.scrollIntoView({ block: "nearest" });
      }
    }),
  );
  add(m.footer, h("button", { class: "btn", type: "button", "data-testid": "tp-cancel", onClick: () => m.dismiss() }, t("common.cancel")), save);
  nameInput.focus();
}

function optionsPreview(data) {
  const options = Array.isArray(data) ? data : (data && (data.items || data.options)) || [];
  const total = leafCount(options);
  return h(
    "div",
    {},
    h("div", { class: "muted small", "data-testid": "options-count" }, t("tp.enum.count", { n: total })),
    total > MANY_OPTIONS ? h("div", { class: "alert alert-warn small", "data-testid": "many-options" }, t("tp.enum.too_many", { n: total })) : null,
    h(
      "ul",
      { class: "tree" },
      options.slice(0, 200).map((o) =>
        h(
          "li",
          {},
          h("code", {}, o.code),
          " ",
          o.name,
          o.children && o.children.length
            ? h("ul", {}, o.children.map((c) => h("li", {}, h("code", {}, c.code), " ", c.name)))
            : null,
        ),
      ),
    ),
  );
}

/** The signing secret, shown once after creation. */
export function showSecret(saved, intro) {
  const m = modal({ title: intro ? t("tp.secret.rotated_title") : t("tp.secret.title"), size: "sm", testid: "secret-dialog" });
  const value = h("input", { type: "text", readonly: true, value: saved.signing_secret, class: "mono", "data-testid": "signing-secret" });
  const copy = h("button", { class: "btn", type: "button", "data-testid": "copy-secret" }, t("tp.secret.copy"));
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(saved.signing_secret);
    } catch {
      // Clipboard access can be refused (no secure context); selecting lets Ctrl+C work.
      value.select();
      document.execCommand("copy");
    }
    copy.textContent = t("tp.secret.copied");
  });
  add(m.body, 
    h("p", {}, intro || t("tp.secret.created", { name: saved.name })),
    h("div", { class: "input-row" }, value, copy),
    h("div", { class: "alert alert-warn" }, h("div", { class: "alert-title" }, t("tp.secret.once_title")), t("tp.secret.once_text")),
  );
  add(m.footer, h("button", { class: "btn btn-primary", type: "button", "data-testid": "secret-done", onClick: () => m.close() }, t("tp.secret.done")));
  value.select();
}
