// The corrections page: plain JS over the REST API (no build step). The token is asked once and kept in
// this browser's localStorage; "#token=..." in the address is taken and removed from it.
"use strict";

const KEY = "assistant-token";

function token() { return localStorage.getItem(KEY) || ""; }

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) { showLogin("That token was refused."); throw new Error("unauthorized"); }
  const data = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.blob();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function svgEl(tag, attrs = {}, text = "") {  // SVG children need the SVG namespace to be drawn
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
}

function say(text, isError = false) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function showLogin(message = "") {
  document.getElementById("main").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message;
}

async function play(id, button) {
  const blob = await api("GET", `/v1/utterances/${id}/audio`);
  const audio = new Audio(URL.createObjectURL(blob));
  button.disabled = true;
  audio.onended = () => { button.disabled = false; };
  await audio.play();
}

function turnRow(u) {
  const input = el("input", { value: u.label ? u.label.text : (u.transcript || ""), size: "40",
                              "aria-label": `what was said in utterance ${u.id}` });
  const fix = el("button", { class: "correct", onclick: async () => {
    await api("PATCH", `/v1/utterances/${u.id}`, { label: input.value });
    say(`utterance ${u.id} corrected`); await refresh();
  } }, "Correct");
  const ok = el("button", { class: "confirm", onclick: async () => {
    await api("PATCH", `/v1/utterances/${u.id}`, { confirm: true });
    say(`utterance ${u.id} confirmed`); await refresh();
  } }, "Right");
  const listen = el("button", { onclick: (e) => play(u.id, e.target) }, "▶");
  const label = u.label ? el("span", { class: "label" }, ` ✓ ${u.label.source}`) : "";
  return el("tr", { "data-id": String(u.id) }, el("td", {}, String(u.id)),
            el("td", {}, (u.created_at || "").slice(0, 19).replace("T", " ")),
            el("td", {}, input, label), el("td", { class: "reply" }, u.response || ""),
            el("td", {}, listen, fix, u.transcript ? ok : ""));
}

function plot(versions) {
  const svg = document.getElementById("plot");
  svg.replaceChildren();
  const pts = versions.filter((v) => v.metrics && v.metrics.user_wer_after != null).reverse();
  if (!pts.length) {
    svg.append(svgEl("text", { x: "10", y: "20" }, "No personalized version yet: correct or confirm some turns; " +
                     "the assistant adapts when you are idle."));
    svg.setAttribute("height", "30");
    return;
  }
  const W = 560, H = 180, pad = 30;
  const max = Math.max(0.05, ...pts.flatMap((v) => [v.metrics.user_wer_after, v.metrics.generic_wer_after || 0]));
  const x = (i) => pad + (pts.length === 1 ? 0 : i * (W - 2 * pad) / (pts.length - 1));
  const y = (w) => H - pad - (w / max) * (H - 2 * pad);
  for (const [key, cls] of [["user_wer_after", "user"], ["generic_wer_after", "generic"]]) {
    const d = pts.map((v, i) => `${i ? "L" : "M"}${x(i)},${y(v.metrics[key] || 0)}`).join(" ");
    svg.append(svgEl("path", { d, class: cls }));
    pts.forEach((v, i) => svg.append(svgEl("circle", { cx: x(i), cy: y(v.metrics[key] || 0), r: "3", class: cls })));
  }
  svg.setAttribute("height", String(H));
  pts.forEach((v, i) => svg.append(svgEl("text", { x: x(i) - 12, y: H - 8 }, v.version)));
  svg.append(svgEl("text", { x: "4", y: "14" }, `word error rate (up to ${max.toFixed(2)}): blue your voice, grey generic speech`));
}

function bridgeRow(v, active) {
  const m = v.metrics || {};
  const use = v.version === active ? el("strong", {}, "serving") :
    v.status === "rejected" ? "" : el("button", { onclick: async () => {
      const r = await api("POST", `/v1/bridges/${encodeURIComponent(v.version)}/activate`);
      say(`now serving ${r.active} (was ${r.previous})`); await refresh();
    } }, "Use this one");
  const fmt = (w) => (w == null ? "" : w.toFixed(3));
  return el("tr", {}, el("td", {}, v.version), el("td", {}, v.status), el("td", {}, fmt(m.user_wer_after)),
            el("td", {}, fmt(m.generic_wer_after)), el("td", {}, (v.created_at || "").slice(0, 19).replace("T", " ")),
            el("td", {}, use));
}

function timerRow(t) {
  const what = t.kind + (t.label ? ` "${t.label}"` : "") + (t.time_of_day ? ` at ${t.time_of_day}` : "") +
    (t.repeat ? ` (${t.repeat})` : "");
  const cancel = el("button", { onclick: async () => {
    await api("DELETE", `/v1/timers/${t.id}`); say(`${t.kind} ${t.id} cancelled`); await refresh();
  } }, "Cancel");
  const left = t.remaining_s == null ? "" : `${Math.round(t.remaining_s)} s` + (t.state === "paused" ? " (paused)" : "");
  return el("tr", {}, el("td", {}, String(t.id)), el("td", {}, what),
            el("td", {}, (t.due_at || "").slice(0, 19).replace("T", " ")), el("td", {}, left), el("td", {}, cancel));
}

async function refresh() {
  const [turns, prompts, bridges, timers] = await Promise.all([
    api("GET", "/v1/utterances?limit=30"), api("GET", "/v1/enrollment/prompts"), api("GET", "/v1/bridges"),
    api("GET", "/v1/timers").catch(() => ({ timers: [] }))]);
  document.querySelector("#turns tbody").replaceChildren(...turns.utterances.map(turnRow));
  const recorded = prompts.prompts.filter((p) => p.recorded_utterance_id).length;
  const more = Math.max(0, (prompts.labels_needed || 0) - (prompts.labelled || 0));
  document.getElementById("enrollment").textContent =
    `${recorded} of ${prompts.prompts.length} prompts recorded (assistant enroll records the next one); ` +
    `${prompts.labelled} labelled utterances, ` +
    (more ? `about ${more} more before your voice can be learned.` : "enough to learn your voice.");
  document.querySelector("#bridges tbody").replaceChildren(...bridges.versions.map((v) => bridgeRow(v, bridges.active)));
  plot(bridges.versions);
  document.querySelector("#timers tbody").replaceChildren(...timers.timers.map(timerRow));
  document.body.dataset.loaded = "yes";
}

async function start() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    localStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  if (!token()) { showLogin(); return; }
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  try { await refresh(); } catch (e) { if (e.message !== "unauthorized") say(e.message, true); }
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem(KEY, document.getElementById("token").value.trim());
  start();
});
window.addEventListener("error", (e) => say(String(e.message), true));
window.addEventListener("unhandledrejection", (e) => say(String(e.reason && e.reason.message), true));
start();
