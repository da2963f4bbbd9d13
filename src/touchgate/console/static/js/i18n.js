// Languages: Simplified Chinese and English. The choice comes from navigator.language
// the first time, then from the switch in the header (kept in localStorage).

export const LANGS = ["zh-CN", "en"];
const STORE_KEY = "touchgate.lang";

let current = "en";
let dict = {};
let fallback = {};

export function detectLang() {
  const saved = localStorage.getItem(STORE_KEY);
  if (LANGS.includes(saved)) return saved;
  const wanted = [...(navigator.languages || []), navigator.language || ""];
  for (const tag of wanted) {
    if (/^zh\b/i.test(tag)) return "zh-CN";
    if (/^en\b/i.test(tag)) return "en";
  }
  return "en";
}

async function fetchDict(lang) {
  const res = await fetch(`/console/i18n/${lang}.json`);
  if (!res.ok) throw new Error(`cannot load ${lang}.json: ${res.status}`);
  return res.json();
}

export async function setLang(lang, { persist = false } = {}) {
  if (!LANGS.includes(lang)) lang = "en";
  if (!Object.keys(fallback).length) fallback = await fetchDict("en");
  dict = lang === "en" ? fallback : await fetchDict(lang);
  current = lang;
  if (persist) localStorage.setItem(STORE_KEY, lang);
  document.documentElement.lang = lang;
  document.title = t("app.title");
}

export function lang() {
  return current;
}

/** t("tp.count", {n: 3}) — the text for a key, with {placeholders} filled in. */
export function t(key, vars) {
  let text = dict[key] ?? fallback[key];
  if (text === undefined) {
    console.warn("missing translation", key);
    return key;
  }
  if (vars) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  return text;
}

/** t() for keys that may not exist (codes from the server): null when unknown. */
export function tMaybe(key, vars) {
  return key in dict || key in fallback ? t(key, vars) : null;
}

export function formatDateTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(d);
}

export function formatNumber(n) {
  return new Intl.NumberFormat(current).format(n ?? 0);
}

/** "3 minutes ago" in the current language. */
export function formatRelative(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const seconds = Math.round((d.getTime() - Date.now()) / 1000);
  const rtf = new Intl.RelativeTimeFormat(current, { numeric: "auto" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}
