// The ops console's page: reads the JSON API, renders with textContent (never innerHTML), sends the token header on
// every mutation. One listing at a time; counts and events refresh on a timer.
"use strict";
const token = document.querySelector('meta[name="cmkctl-token"]').content;
const $ = (id) => document.getElementById(id);
let letters = [];
let reasonFilter = null;
let pending = null;

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function age(iso, now) {
  if (!iso) return "-";
  const seconds = Math.max(0, (Date.parse(now) - Date.parse(iso)) / 1000);
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

function notice(text) {
  $("notice").hidden = !text;
  $("notice").textContent = text || "";
}

function showCounts(counts) {
  for (const [id, key] of [["count-active", "active"], ["count-scheduled", "scheduled"], ["count-dead", "deadLetter"]]) {
    $(id).textContent = counts && counts.error === undefined ? String(counts[key]) : "n/a";
  }
  if (counts && counts.error) notice(`Counts unavailable: ${counts.error}`);
}

async function refreshCounts() {
  try { showCounts((await api("/api/overview?counts=only")).counts); } catch (e) { notice(e.message); }
}

async function refresh() {
  $("refresh").disabled = true;
  try {
    const overview = await api("/api/overview");
    notice(overview.truncated ? "Only the first dead letters were read (scan limit)." : "");
    showCounts(overview.counts);
    letters = overview.letters;
    if (reasonFilter && !overview.groups.some((g) => g.reason === reasonFilter)) reasonFilter = null;
    renderGroups(overview.groups, overview.now);
    renderLetters(overview.now);
  } catch (e) {
    notice(e.message);
  } finally {
    $("refresh").disabled = false;
  }
}

function renderGroups(groups, now) {
  const body = $("groups").tBodies[0];
  body.replaceChildren();
  for (const group of groups) {
    const row = body.insertRow();
    row.dataset.reason = group.reason;
    cell(row, group.reason, "reason");
    cell(row, String(group.count), "num count");
    cell(row, age(group.oldest, now));
    cell(row, age(group.newest, now));
    const actions = row.insertCell();
    for (const [label, action, css] of [["Replay group", "replay", "replay-group"], ["Purge group", "purge", "purge-group danger"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.className = css;
      button.addEventListener("click", (event) => {
        event.stopPropagation();
        ask(action, letters.filter((l) => reasonOf(l) === group.reason), `the ${group.reason} group`);
      });
      actions.append(button, " ");
    }
    row.addEventListener("click", () => { reasonFilter = group.reason; renderLetters(now); });
  }
}

function reasonOf(letter) {
  return letter.handlerReason || letter.deadLetterReason || "Unknown";
}

function renderLetters(now) {
  const body = $("letters").tBodies[0];
  body.replaceChildren();
  $("filter-label").textContent = reasonFilter ? `· ${reasonFilter}` : "";
  $("clear-filter").hidden = !reasonFilter;
  for (const letter of letters.filter((l) => !reasonFilter || reasonOf(l) === reasonFilter)) {
    const row = body.insertRow();
    row.dataset.seq = String(letter.sequenceNumber);
    const box = document.createElement("input");
    box.type = "checkbox";
    box.className = "pick";
    box.addEventListener("click", (event) => { event.stopPropagation(); updateButtons(); });
    row.insertCell().append(box);
    cell(row, String(letter.sequenceNumber), "num");
    cell(row, letter.onboardingId || "-", "onboarding");
    cell(row, reasonOf(letter));
    cell(row, age(letter.enqueuedTime, now));
    row.addEventListener("click", () => inspect(letter.sequenceNumber, row));
  }
  updateButtons();
}

function picked() {
  const seqs = [...document.querySelectorAll("#letters input.pick:checked")].map((b) => Number(b.closest("tr").dataset.seq));
  return letters.filter((l) => seqs.includes(l.sequenceNumber));
}

function updateButtons() {
  const none = picked().length === 0;
  $("replay-selected").disabled = none;
  $("purge-selected").disabled = none;
}

async function inspect(sequence, row) {
  document.querySelectorAll("#letters tr.active").forEach((r) => r.classList.remove("active"));
  row.classList.add("active");
  const panel = $("inspect");
  panel.replaceChildren(Object.assign(document.createElement("h2"), { textContent: `Message ${sequence}` }));
  const loading = Object.assign(document.createElement("p"), { className: "hint", textContent: "Reading and diagnosing…" });
  panel.append(loading);
  try {
    const message = await api(`/api/message/${sequence}`);
    loading.remove();
    const diagnosis = document.createElement("p");
    diagnosis.id = "diagnosis";
    const d = message.diagnosis;
    if (d.error) {
      diagnosis.textContent = `Diagnosis: ${d.error}`;
    } else {
      const verdict = document.createElement("span");
      verdict.className = d.ready ? "ready" : "blocked";
      verdict.textContent = d.ready ? "Ready: a replay should succeed" : `Blocked by ${d.blockedBy}`;
      diagnosis.append("Diagnosis now: ", verdict);
    }
    panel.append(diagnosis);
    for (const [title, properties] of [["System properties", message.systemProperties], ["Application properties", message.applicationProperties]]) {
      panel.append(Object.assign(document.createElement("h2"), { textContent: title }));
      const list = document.createElement("dl");
      for (const [name, value] of Object.entries(properties)) {
        if (value === null) continue;
        list.append(Object.assign(document.createElement("dt"), { textContent: name }));
        list.append(Object.assign(document.createElement("dd"), { textContent: typeof value === "string" ? value : JSON.stringify(value) }));
      }
      panel.append(list);
    }
    panel.append(Object.assign(document.createElement("h2"), { textContent: "Body" }));
    panel.append(Object.assign(document.createElement("pre"), { textContent: JSON.stringify(message.body, null, 2) }));
  } catch (e) {
    loading.textContent = e.message;
  }
}

function ask(action, chosen, what) {
  if (chosen.length === 0) return;
  pending = { action, messages: chosen.map((l) => ({ sequenceNumber: l.sequenceNumber, messageId: l.messageId })) };
  const seqs = chosen.map((l) => l.sequenceNumber).join(", ");
  $("confirm-text").textContent = `${action === "replay" ? "Replay" : "Purge"} ${chosen.length} dead letter(s) of ${what} (sequence numbers ${seqs})? ` +
    "Exactly these are acted on; anything that changed since this listing is reported, not touched." +
    (action === "purge" ? " Purged messages are archived first." : "");
  $("confirm").hidden = false;
}

async function confirmed() {
  $("confirm").hidden = true;
  const request = pending;
  pending = null;
  const job = $("job");
  job.hidden = false;
  job.textContent = `${request.action}: starting…`;
  try {
    const started = await api("/api/actions", {
      method: "POST",
      headers: { "content-type": "application/json", "x-cmkctl-token": token },
      body: JSON.stringify(request),
    });
    for (let polls = 0; polls < 3600; polls++) {
      const status = await api(`/api/actions/${started.id}`);
      const p = status.progress;
      job.textContent = `${status.action}: ${p.done}/${p.total}${p.failed ? ` (${p.failed} failed)` : ""} ${status.state}`;
      if (status.state === "done") {
        const s = status.summary;
        const done = status.action === "replay" ? "replayed" : "purged";
        const gone = s.report.missing.length + s.report.changed.length;
        job.textContent = `${status.action} done: ${s.succeeded} ${done}, ${s.failed} failed` +
          (gone ? `, ${gone} not acted on (gone or changed since the listing)` : "") +
          (s.archive ? `; archived to ${s.archive}` : "") + `; audit ${s.auditFile}`;
        break;
      }
      if (status.state === "failed") { job.textContent = `${status.action} failed: ${status.error}`; break; }
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (e) {
    job.textContent = `${request.action} refused: ${e.message}`;
  }
  const panel = $("inspect");
  panel.replaceChildren(Object.assign(document.createElement("h2"), { textContent: "Message" }),
    Object.assign(document.createElement("p"), { className: "hint", textContent: "Select a dead letter to see its properties, body and what blocks it now." }));
  await refresh();
}

async function refreshEvents() {
  try {
    const answer = await api("/api/events");
    $("events-source").textContent = answer.subscription ? `· subscription ${answer.subscription}` : "· no subscription";
    const body = $("events").tBodies[0];
    body.replaceChildren();
    for (const event of answer.events) {
      const row = body.insertRow();
      row.dataset.type = event.type;
      cell(row, event.time.replace("T", " ").replace(/\..*|Z$/, ""));
      cell(row, event.type);
      cell(row, event.onboardingId);
      const detail = cell(row, event.detail.length > 110 ? `${event.detail.slice(0, 109)}…` : event.detail, "detail");
      detail.title = event.detail;
    }
    if (answer.error) notice(`Events: ${answer.error}`);
  } catch (e) { notice(e.message); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("refresh").addEventListener("click", refresh);
  $("clear-filter").addEventListener("click", () => { reasonFilter = null; refresh(); });
  $("select-all").addEventListener("change", (e) => {
    document.querySelectorAll("#letters input.pick").forEach((b) => { b.checked = e.target.checked; });
    updateButtons();
  });
  $("replay-selected").addEventListener("click", () => ask("replay", picked(), "the selection"));
  $("purge-selected").addEventListener("click", () => ask("purge", picked(), "the selection"));
  $("confirm-yes").addEventListener("click", confirmed);
  $("confirm-no").addEventListener("click", () => { pending = null; $("confirm").hidden = true; });
  refresh();
  refreshEvents();
  setInterval(refreshCounts, 3000);
  setInterval(refreshEvents, 2000);
});
