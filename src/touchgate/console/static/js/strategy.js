// The strategy tree of a campaign as the API stores it, and the edits the canvas makes
// to it. Steps are plain JSON objects edited in place; a step hangs in a "slot" (the
// campaign's `strategy`, a send step's `next`, a branch's `next`, a split's `otherwise`),
// addressed by the API's field path of that slot ("strategy.branches[1].next"), which is
// also the path of the step in the service's error messages.

import { blankFilter } from "./filters.js";

export const MAX_SPLIT_BRANCHES = 5;
export const MIN_AB_BRANCHES = 2;
export const MAX_AB_BRANCHES = 10;
export const MAX_CHANNELS = 10;
// What the step type chooser offers, in order.
export const STEP_KINDS = ["send", "audience", "event", "ab"];

/** "send" | "audience" | "event" | "ab" | "unknown": what a step draws as. */
export function kindOf(step) {
  if (!step || typeof step !== "object") return "unknown";
  if (step.type === "send") return "send";
  if (step.type === "ab") return "ab";
  if (step.type === "split") return step.by === "event" ? "event" : "audience";
  return "unknown";
}

export function isControl(step) {
  return kindOf(step) === "send" && step.timing && step.timing.type === "none";
}

/**
 * The slots under a step, in drawing order: [{holder, key, path, branch}] where
 * holder[key] is the child step (or empty) and `branch` is the index of the branch
 * (-1 for "everyone else", null for a send step's `next`).
 */
export function childSlots(step, path) {
  const kind = kindOf(step);
  if (kind === "send") return isControl(step) ? [] : [{ holder: step, key: "next", path: `${path}.next`, branch: null }];
  if (kind === "unknown") return [];
  const branches = Array.isArray(step.branches) ? step.branches : [];
  const slots = branches.map((br, i) => ({ holder: br, key: "next", path: `${path}.branches[${i}].next`, branch: i }));
  if (kind !== "ab") slots.push({ holder: step, key: "otherwise", path: `${path}.otherwise`, branch: -1 });
  return slots;
}

/** Every step with its path, depth first. */
export function allSteps(root, path = "strategy") {
  if (!root || typeof root !== "object") return [];
  const out = [{ step: root, path }];
  for (const slot of childSlots(root, path)) {
    const child = slot.holder && slot.holder[slot.key];
    if (child && typeof child === "object") out.push(...allSteps(child, slot.path));
  }
  return out;
}

/** The slot a path names (the one holding the step at that path), from the document. */
export function slotAt(doc, path) {
  if (path === "strategy") return { holder: doc, key: "strategy", path };
  for (const { step, path: p } of allSteps(doc.strategy)) {
    for (const slot of childSlots(step, p)) if (slot.path === path) return slot;
  }
  return null;
}

/** The slot holding `path`'s parent step, when that parent is a send step (for moves). */
function parentSendSlot(doc, path) {
  if (!path.endsWith(".next")) return null;
  const parentPath = path.slice(0, -".next".length);
  if (/\]$/.test(parentPath)) return null; // a branch's next: the parent is a split
  const slot = slotAt(doc, parentPath);
  return slot && kindOf(slot.holder[slot.key]) === "send" ? slot : null;
}

function freeId(doc) {
  const used = new Set(allSteps(doc.strategy).map(({ step }) => step.id));
  let n = used.size + 1;
  while (used.has(`s${n}`)) n++;
  return `s${n}`;
}

export function newChannel() {
  return { touchpoint_id: null, params: {} };
}

export function newStep(doc, kind) {
  const id = freeId(doc);
  if (kind === "send") return { type: "send", id, mode: "first_success", timing: { type: "now" }, channels: [newChannel()] };
  if (kind === "ab") return { type: "ab", id, branches: [{ percent: 50 }, { percent: 50 }] };
  const filterKind = kind === "event" ? "property" : "attribute";
  return { type: "split", id, by: kind === "event" ? "event" : "audience", branches: [{ filter: blankFilter(filterKind) }] };
}

/**
 * Put a new step into a slot. What was there goes after it: as the `next` of a send
 * step, or into the first branch of a split.
 */
export function insertStep(doc, slotPath, kind) {
  const slot = slotAt(doc, slotPath);
  if (!slot) return null;
  const step = newStep(doc, kind);
  const before = slot.holder[slot.key];
  if (before && typeof before === "object") {
    if (kind === "send") step.next = before;
    else step.branches[0].next = before;
  }
  slot.holder[slot.key] = step;
  return step;
}

/** How many steps removing the step at `path` takes away (itself included). */
export function removalCount(doc, path) {
  const slot = slotAt(doc, path);
  const step = slot && slot.holder[slot.key];
  if (!step) return 0;
  // A send step's followers move up into its place; a split's branches go with it.
  return kindOf(step) === "send" ? 1 : allSteps(step, path).length;
}

export function removeStep(doc, path) {
  const slot = slotAt(doc, path);
  const step = slot && slot.holder[slot.key];
  if (!step) return;
  const follower = kindOf(step) === "send" && step.next && typeof step.next === "object" ? step.next : null;
  if (follower) slot.holder[slot.key] = follower;
  else if (slot.key === "strategy") slot.holder.strategy = null;
  else delete slot.holder[slot.key];
}

/** Whether the step at `path` can swap places with the send step before (-1) or after (1) it. */
export function canMove(doc, path, dir) {
  const slot = slotAt(doc, path);
  const step = slot && slot.holder[slot.key];
  if (kindOf(step) !== "send") return false;
  if (dir < 0) {
    // The step goes first, so it must be able to carry a `next`.
    return Boolean(parentSendSlot(doc, path)) && !isControl(step);
  }
  const next = step.next;
  return kindOf(next) === "send" && !isControl(next);
}

/** Swap a send step with the send step before or after it in its chain. */
export function moveStep(doc, path, dir) {
  if (!canMove(doc, path, dir)) return null;
  const upper = dir < 0 ? parentSendSlot(doc, path) : slotAt(doc, path);
  const first = upper.holder[upper.key];
  const second = first.next;
  if (second.next !== undefined) first.next = second.next;
  else delete first.next;
  second.next = first;
  upper.holder[upper.key] = second;
  // The path of the moved step afterwards.
  return dir < 0 ? upper.path : `${upper.path}.next`;
}

export function moveItem(list, i, dir) {
  const j = i + dir;
  if (j < 0 || j >= list.length) return false;
  [list[i], list[j]] = [list[j], list[i]];
  return true;
}

/** 100 shared out as evenly as whole percentages allow. */
export function evenPercents(n) {
  const base = Math.floor(100 / n);
  return Array.from({ length: n }, (_, i) => base + (i < 100 - base * n ? 1 : 0));
}

export function percentSum(step) {
  return (step.branches || []).reduce((sum, br) => sum + (Number.isInteger(br.percent) ? br.percent : 0), 0);
}

/**
 * The step an error path belongs to: the longest step path that is a prefix of it
 * ("strategy.branches[1].next.channels[0].params.title" → "strategy.branches[1].next").
 */
export function owningStep(stepPaths, field) {
  let best = null;
  for (const p of stepPaths) {
    if (field === p || field.startsWith(`${p}.`) || field.startsWith(`${p}[`)) {
      if (!best || p.length > best.length) best = p;
    }
  }
  return best;
}
