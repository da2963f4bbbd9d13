// A campaign in words: its trigger, audience, steps with their touchpoints and template
// values, and protection — what an approver reads on the campaign's page before
// approving or publishing, without opening the editor.

import { badge, h } from "./dom.js";
import { formatNumber, lang, t } from "./i18n.js";
import { formatZoned, zoned } from "./time.js";
import { readinessBadges } from "./touchpoints.js";

/** "Once, at 1 Dec 2026, 10:00 (Asia/Shanghai)", "Daily 10:00 (Asia/Shanghai)", … */
export function triggerSummary(trigger) {
  if (!trigger || !trigger.type) return "";
  if (trigger.type === "once") return trigger.at ? t("campaign.trigger.once_at", { at: formatZoned(trigger.at) }) : t("campaign.trigger.once_now");
  if (trigger.type === "recurring") {
    if (trigger.cron) return zoned(t("campaign.trigger.cron_summary", { cron: trigger.cron }));
    const every = trigger.every || "daily";
    const day =
      every === "weekly" && trigger.weekday !== undefined
        ? t(`campaign.weekday.${trigger.weekday}`)
        : every === "monthly" && trigger.day !== undefined
          ? t("campaign.trigger.day_of_month", { day: trigger.day })
          : "";
    const text = day ? t("campaign.trigger.every_day_summary", { every: t(`campaign.trigger.every.${every}`), day, time: trigger.time || "" }) : t("campaign.trigger.every_summary", { every: t(`campaign.trigger.every.${every}`), time: trigger.time || "" });
    return zoned(text);
  }
  if (trigger.type === "event") return t("campaign.trigger.event_summary", { event: trigger.event || "" });
  if (trigger.type === "event_without") {
    return t("campaign.trigger.event_without_summary", { event: trigger.event || "", without: trigger.without || "", minutes: formatNumber(trigger.within_minutes ?? 0) });
  }
  return t(`campaign.trigger.type.${trigger.type}`);
}

/** The window of a recurring campaign ("from … until …"), or null. */
function windowSummary(trigger) {
  if (!trigger || trigger.type !== "recurring" || (!trigger.start && !trigger.end)) return null;
  if (trigger.start && trigger.end) return t("campaign.summary.window", { start: formatZoned(trigger.start), end: formatZoned(trigger.end) });
  return trigger.start ? t("campaign.summary.from", { start: formatZoned(trigger.start) }) : t("campaign.summary.until", { end: formatZoned(trigger.end) });
}

function valueText(value) {
  if (Array.isArray(value)) return value.map(valueText).join(t("campaign.summary.list_sep"));
  if (typeof value === "boolean") return value ? t("common.yes") : t("common.no");
  return String(value ?? "");
}

/** A filter as a sentence: "City equals Shanghai and (Level at least 3 or …)". */
export function filterSummary(filter, catalogue, nested = false) {
  if (!filter) return "";
  if (filter.conditions) {
    const parts = filter.conditions.map((c) => filterSummary(c, catalogue, true)).filter(Boolean);
    const text = parts.join(t(`campaign.summary.join_${filter.op === "or" ? "or" : "and"}`));
    return nested && parts.length > 1 ? t("campaign.summary.group", { text }) : text;
  }
  const attr = catalogue.get(filter.attribute);
  const name = attr ? attr.name : filter.attribute;
  const op = t(`campaign.op.${filter.operator}`);
  // "City equals Shanghai", "城市 等于 Shanghai": the same order in both languages.
  if (filter.operator === "exists" || filter.operator === "not_exists") return `${name} ${op}`;
  return `${name} ${op} ${valueText(filter.value)}`;
}

function audienceSummary(audience, catalogue) {
  const a = audience || { match: "all" };
  if (a.match === "filter") return filterSummary(a.filter, catalogue);
  if (a.match === "list") return t("campaign.summary.list", { n: formatNumber((a.gids || []).length) });
  return t("campaign.audience.all");
}

function participationSummary(p) {
  if (p && p.mode === "every") return t("campaign.summary.participation_every", { days: p.days });
  return t("campaign.participation.once");
}

/** Every step of a strategy, depth first (the order stats and the editor number them). */
export function stepsOf(strategy) {
  const out = [];
  const walk = (step) => {
    if (!step || typeof step !== "object") return;
    out.push(step);
    walk(step.next);
    for (const branch of step.branches || []) walk(branch.next);
    walk(step.otherwise);
  };
  walk(strategy);
  return out;
}

/**
 * A name for each step id: the step's own name when it has one (or the stats'), else
 * its kind and number ("Send step 2"), never the internal id alone.
 */
export function stepNames(strategy, byStep = {}) {
  const names = new Map();
  const counts = {};
  for (const step of stepsOf(strategy)) {
    const kind = step.type === "split" || step.type === "ab" ? step.type : "send";
    counts[kind] = (counts[kind] || 0) + 1;
    const given = (byStep[step.id] && byStep[step.id].name) || step.name;
    names.set(String(step.id), given || t(`campaign.step.${kind}`, { n: counts[kind] }));
  }
  for (const [id, s] of Object.entries(byStep)) if (!names.has(id) && s && s.name) names.set(id, s.name);
  return names;
}

/** A touchpoint's name for history: the stored one, marked when it was deleted. */
export function touchpointLabel(id, { name, deleted } = {}) {
  if (!name) return t("campaign.touchpoint_unknown", { id });
  return deleted ? t("campaign.touchpoint_deleted", { name }) : name;
}

function paramValue(param, value) {
  if (param && param.type === "enum" && param.enum && param.enum.source === "manual") {
    for (const o of param.enum.options || []) {
      if (o.code === value) return t("enum.option", { name: o.name, code: o.code });
      for (const c of o.children || []) if (c.code === value) return t("enum.option", { name: `${o.name} › ${c.name}`, code: c.code });
    }
  }
  return valueText(value);
}

function channelSummary(ch, touchpoints, history, spaceId) {
  const tp = touchpoints.get(Number(ch.touchpoint_id));
  // A touchpoint no longer in the live list keeps the name the campaign recorded for it.
  const past = history.get(Number(ch.touchpoint_id));
  const params = Object.entries(ch.params || {});
  const declared = new Map(((tp && tp.template_params) || []).map((p) => [p.key, p]));
  return h(
    "li",
    { class: "summary-channel", "data-testid": "summary-channel" },
    h(
      "div",
      {},
      h("span", { class: "strong" }, tp ? tp.name : touchpointLabel(ch.touchpoint_id, past)),
      " ",
      tp ? readinessBadges(tp, { spaceId }) : badge(t("campaign.summary.unavailable"), "error"),
    ),
    params.length
      ? h(
          "dl",
          { class: "kv" },
          params.map(([key, value]) => {
            const p = declared.get(key);
            return [h("dt", { title: key }, p ? p.name : key), h("dd", { "data-param": key }, paramValue(p, value))];
          }),
        )
      : h("div", { class: "muted small" }, t("campaign.summary.no_values")),
  );
}

function stepSummary(step, names, touchpoints, history, spaceId) {
  const name = names.get(String(step.id));
  if (step.type === "split" || step.type === "ab") {
    const branches = (step.branches || []).map((b) => new Intl.NumberFormat(lang(), { style: "percent" }).format((b.percent || 0) / 100));
    return h("li", { class: "summary-step" }, h("div", { class: "strong" }, name), h("div", { class: "muted small" }, step.type === "ab" ? branches.join(t("campaign.summary.list_sep")) : t("campaign.summary.split", { n: (step.branches || []).length })));
  }
  const timing = step.timing || { type: "now" };
  const when = timing.type === "delay" ? t("campaign.summary.after", { minutes: formatNumber(timing.minutes) }) : t(`campaign.timing.${timing.type}`);
  return h(
    "li",
    { class: "summary-step", "data-testid": "summary-step" },
    h("div", {}, h("span", { class: "strong" }, name), h("span", { class: "muted small" }, `${when} · ${t(`campaign.mode.${step.mode || "first_success"}`)}`)),
    timing.type === "none" ? null : h("ol", { class: "summary-channels" }, (step.channels || []).map((ch) => channelSummary(ch, touchpoints, history, spaceId))),
  );
}

/**
 * The approver's summary card. `audience` is a slot the caller fills with the size
 * when it is known (it needs a preview request).
 */
export function summaryCard(campaign, { catalogue, touchpoints, spaceId, audienceSize, byStep }) {
  const names = stepNames(campaign.strategy, byStep);
  const history = new Map((campaign.touchpoints || []).map((tp) => [Number(tp.id), tp]));
  const win = windowSummary(campaign.trigger);
  const row = (label, ...value) => [h("dt", {}, label), h("dd", {}, ...value)];
  return h(
    "section",
    { class: "card card-pad summary", "data-testid": "campaign-summary" },
    h("h3", {}, t("campaign.summary.title")),
    h(
      "dl",
      { class: "kv kv-wide" },
      row(t("campaign.summary.trigger"), h("span", { "data-testid": "summary-trigger" }, triggerSummary(campaign.trigger)), win ? h("div", { class: "muted small" }, win) : null),
      row(t("campaign.summary.audience"), h("span", {}, audienceSummary(campaign.audience, catalogue)), h("div", { class: "muted small", "data-testid": "summary-audience-size" }, audienceSize)),
      row(t("campaign.summary.participation"), participationSummary(campaign.participation)),
      row(
        t("campaign.summary.protection"),
        h("span", { "data-testid": "summary-protection" }, campaign.anti_disturb ? t("campaign.summary.protection_on") : t("campaign.summary.protection_off")),
      ),
    ),
    h("div", { class: "sub-title" }, t("campaign.summary.steps")),
    h("ol", { class: "summary-steps" }, stepsOf(campaign.strategy).map((step) => stepSummary(step, names, touchpoints, history, spaceId))),
  );
}
