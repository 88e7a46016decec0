// jobctl's page: read-only, polls the server once a second. Every value is
// put in with textContent (never as HTML), since job output is anyone's text.
"use strict";

const POLL_MS = 1000;
const FINISHED = new Set(["completed", "failed", "cancelled", "timed_out", "lost"]);
let timer = null;
let detailId = null;

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "-";
  s = Number(s);
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  if (h) return h + " h " + (m % 60) + " m";
  return m + " m " + Math.floor(s % 60) + " s";
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "-";
}

function jobLink(id) {
  const a = el("a", id.slice(0, 8));
  a.href = "#job=" + id;
  a.dataset.job = id;
  return a;
}

function fill(tableId, rows, build) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows.map(build));
  const empty = $(tableId + "-empty");
  if (empty) empty.hidden = rows.length > 0;
}

function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "-" : String(c);
    tr.appendChild(td);
  }
  for (const [k, v] of Object.entries(attrs || {})) tr.dataset[k] = v;
  return tr;
}

function bar(pct) {
  const outer = el("span", null, "progress");
  const inner = el("span", null, "bar");
  const value = Math.max(0, Math.min(100, Number(pct) || 0));
  inner.style.width = value + "%";
  outer.appendChild(inner);
  outer.title = value.toFixed(0) + " %";
  outer.dataset.progress = String(value);
  const wrap = el("span");
  wrap.appendChild(outer);
  wrap.appendChild(el("span", " " + value.toFixed(0) + " %", "dim"));
  return wrap;
}

function render(data) {
  fill("queues", data.queues, (q) => row([q.name, q.limit ? q.limit : "unlimited", q.running,
    q.queued, q.done, q.failed, (q.paused ? "paused " : "") + q.waiting.join(", ")], {queue: q.name}));
  fill("running", data.running, (r) => row([jobLink(r.job_id), r.procedure, r.queue, bar(r.progress),
    seconds(r.elapsed_s), r.status, r.last_line], {job: r.job_id}));
  fill("failures", data.failures, (f) => {
    const tr = row([jobLink(f.job_id), f.procedure, f.status, when(f.end_time), f.first_line],
                   {job: f.job_id});
    tr.className = f.status;
    return tr;
  });
  fill("procedures", data.procedures, (p) => row([p.procedure, p.total, p.completed, p.failed,
    p.success_pct === null ? "-" : p.success_pct + " %", seconds(p.p50_s), seconds(p.p95_s)],
    {procedure: p.procedure}));
  $("state").textContent = "updated " + new Date().toLocaleTimeString();
}

async function get(path) {
  const res = await fetch(path, {credentials: "same-origin", headers: {Accept: "application/json"}});
  if (res.status === 401) { signIn(); return null; }
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

async function poll() {
  try {
    const data = await get("/overview");
    if (data) { render(data); showBoard(); }
    if (data && detailId) await showDetail(detailId);
  } catch (e) {
    $("state").textContent = "error: " + e.message + " (retrying)";
  }
}

function start() {
  if (timer === null) timer = setInterval(poll, POLL_MS);
  poll();
}

function stop() {
  if (timer !== null) clearInterval(timer);
  timer = null;
}

function showBoard() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
}

function signIn() {
  stop();
  $("board").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("state").textContent = "signed out";
  $("token-input").focus();
}

async function login(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  $("login-error").textContent = "";
  const res = await fetch("/login", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({token})});
  $("token-input").value = "";
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    $("login-error").textContent = body.error || res.statusText;
    return;
  }
  start();
}

async function logout() {
  await fetch("/logout", {method: "POST", credentials: "same-origin"});
  signIn();
}

function text(value) {
  if (value === null || value === undefined || value === "") return "-";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

async function showDetail(id) {
  const job = await get("/jobs/" + encodeURIComponent(id));
  if (!job) return;
  $("detail").hidden = false;
  $("detail-id").textContent = job.job_id;
  const fields = [["procedure", job.procedure_name], ["status", job.status],
    ["progress", job.progress + " %"], ["queue", job.queue], ["started", when(job.start_time)],
    ["ended", when(job.end_time)], ["duration", job.duration], ["submitted by", job.submitted_by],
    ["worker", job.worker_host ? job.worker_host + " pid " + job.worker_pid : null]];
  $("detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", k), el("dd", v === null || v === undefined ? "-" : v)]));
  $("detail-params").textContent = text(job.params);
  $("detail-result").textContent = text(job.result);
  $("detail-error").textContent = text(job.error_msg);
  $("detail-output").textContent = text(job.output);
  $("detail").dataset.status = job.status;
  if (FINISHED.has(job.status)) $("detail").dataset.finished = "yes";
}

function fromHash() {
  const m = /^#job=([0-9a-f]{4,32})$/.exec(location.hash);
  detailId = m ? m[1] : null;
  if (!detailId) $("detail").hidden = true;
  else showDetail(detailId).catch((e) => { $("state").textContent = "error: " + e.message; });
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("detail-close").addEventListener("click", () => { location.hash = ""; });
  window.addEventListener("hashchange", fromHash);
  fromHash();
  start();
});
