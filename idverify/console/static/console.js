// The console page: the log, one entry and its proof, the signed tree head, the charts.
// Everything it shows comes from this origin's /api; every proof is checked here (merkle.js).

import {
  ProofError, fromBase64, leafHash, utf8, verifyInclusion, verifyConsistency,
  verifyHeadSignature, keyId, toBase64,
} from "./merkle.js";

const $ = (id) => document.getElementById(id);
const pages = ["log", "entry", "pending", "head", "charts"];
let me = null;
let pageStart = 0;
let pageAfter = null; // the staged position the page's pending entries follow
// Pending entries of the pages shown, by "bucket/stream id": what their detail page shows.
const pendingShown = new Map();

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) { window.location.assign("/signin"); throw new Error("signed out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(`${body.reason || response.status}: ${body.message || ""}${body.field ? ` (${body.field})` : ""}`);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function utc(ms) { return new Date(ms).toISOString().replace("T", " ").replace(".000Z", "").replace("Z", ""); }

function verdict(id, kind, text) {
  const box = $(id);
  box.className = `verdict ${kind}`;
  box.textContent = text;
}

// -- pinned key and last head (localStorage, per log) ------------------------------------------

const pinKey = (origin) => `idverify.pinned-key.${origin}`;
const lastHeadKey = (origin) => `idverify.last-head.${origin}`;

async function trustedHead() {
  const head = await api("/api/head");
  let pinned = localStorage.getItem(pinKey(head.origin));
  let firstUse = false;
  if (!pinned) { pinned = head.public_key_pem; localStorage.setItem(pinKey(head.origin), pinned); firstUse = true; }
  await verifyHeadSignature(head, pinned);
  return { head, pinned, firstUse };
}

// -- the log ----------------------------------------------------------------------------------

function filterQuery() {
  const q = new URLSearchParams();
  const start = $("f-start").value; const end = $("f-end").value;
  if (start) q.set("start_ms", String(Date.parse(`${start}Z`)));
  if (end) q.set("end_ms", String(Date.parse(`${end}Z`)));
  for (const option of $("f-types").selectedOptions) q.append("type", option.value);
  for (const o of $("f-outcomes").value.split(",").map((s) => s.trim()).filter(Boolean)) q.append("outcome", o);
  if ($("f-method").value.trim()) q.set("method", $("f-method").value.trim());
  if ($("f-account").value.trim()) q.set("account_id", $("f-account").value.trim());
  if ($("f-pending").checked) q.set("pending", "1");
  return q;
}

const positionKey = (p) => `${p.bucket}/${p.stream_id}`;

function logRow(e) {
  if (e.pending) {
    // Not in the log yet: no number, no leaf bytes, no proof; its staged position instead.
    pendingShown.set(positionKey(e.pending), e);
    const mark = el("td", { class: "pending-mark" }, "pending",
      el("span", { class: "position" }, `bucket ${e.pending.bucket} · ${e.pending.stream_id}`));
    const row = el("tr", { class: "pending", "data-bucket": String(e.pending.bucket), "data-stream-id": e.pending.stream_id },
      mark, el("td", {}, utc(e.time_ms)), el("td", {}, e.type), el("td", {}, e.outcome), el("td", {}, e.method),
      el("td", {}, e.reason), el("td", { class: "pseudonym", title: e.account }, e.account));
    row.addEventListener("click", () => { window.location.hash = `#pending/${positionKey(e.pending)}`; });
    return row;
  }
  const row = el("tr", { "data-index": String(e.index) },
    el("td", {}, String(e.index)), el("td", {}, utc(e.time_ms)), el("td", {}, e.type),
    el("td", {}, e.outcome), el("td", {}, e.method), el("td", {}, e.reason),
    el("td", { class: "pseudonym", title: e.account }, e.account));
  row.addEventListener("click", () => { window.location.hash = `#entry/${e.index}`; });
  return row;
}

function pageStatus(page) {
  const numbered = page.events.filter((e) => !e.pending);
  const pending = page.events.length - numbered.length;
  const parts = [];
  if (numbered.length) parts.push(`Entries ${numbered[0].index}–${numbered[numbered.length - 1].index}`);
  if (pending) parts.push(`${pending} pending (not yet in the log)`);
  if (!parts.length) return page.pending_cut ? "No entries match among the staged records read: Next page reads on." : "No entries match.";
  let status = `${parts.join(", ")} (${page.events.length} shown${page.next_index === null ? ", last page" : ""})`;
  if (page.pending_cut) status += ". The server reads 1,024 staged records a page, and more are staged: Next page reads on.";
  return status;
}

async function loadLog(fromIndex = 0, after = null) {
  pageStart = fromIndex;
  pageAfter = after;
  const q = filterQuery();
  q.set("from_index", String(fromIndex));
  if (after) { q.set("pending_bucket", String(after.bucket)); q.set("pending_stream_id", after.stream_id); }
  $("log-status").textContent = "Loading…";
  try {
    const page = await api(`/api/events?${q}`);
    $("log-rows").replaceChildren(...page.events.map(logRow));
    $("next-page").disabled = page.next_index === null;
    $("next-page").dataset.next = page.next_index ?? "";
    $("next-page").dataset.after = page.next_pending_after ? JSON.stringify(page.next_pending_after) : "";
    $("log-status").textContent = pageStatus(page);
  } catch (error) {
    $("log-status").textContent = `Cannot read the log: ${error.message}`;
  }
}

// -- one entry and its proof ------------------------------------------------------------------

async function showEntry(index) {
  $("entry-title").textContent = `Entry ${index}`;
  $("entry-json").textContent = "";
  $("entry-steps").replaceChildren();
  $("entry-verdict").className = "verdict";
  $("verify-entry").dataset.index = String(index);
  try {
    const entry = await api(`/api/events/${index}`);
    $("entry-json").textContent = entry.entry;
    $("entry-json").dataset.entry = entry.entry;
  } catch (error) {
    verdict("entry-verdict", "bad", `Cannot read entry ${index}: ${error.message}`);
  }
}

async function verifyEntry() {
  const index = Number($("verify-entry").dataset.index);
  const steps = $("entry-steps");
  steps.replaceChildren();
  const step = (text) => steps.append(el("li", {}, text));
  verdict("entry-verdict", "info", "Checking…");
  try {
    const entry = await api(`/api/events/${index}`);
    const leaf = await leafHash(utf8(entry.entry));
    step(`Leaf hash computed here from the entry's bytes: ${toBase64(leaf)}`);
    const { head, firstUse } = await trustedHead();
    step(`Tree head of ${head.size} entries signed by key ${head.key_id}: signature checked (Ed25519)${firstUse ? "; key pinned on this first visit" : ""}`);
    const proof = await api(`/api/proof/inclusion?index=${index}&tree_size=${head.size}`);
    const hashes = proof.hashes.map(fromBase64);
    await verifyInclusion(leaf, index, head.size, hashes, fromBase64(head.root_hash));
    step(`Audit path of ${hashes.length} hashes leads to the signed root ${head.root_hash}`);
    verdict("entry-verdict", "ok", `VERIFIED: entry ${index} is in the signed log of ${head.size} entries.`);
  } catch (error) {
    const why = error instanceof ProofError || error.name === "ProofError" ? error.message : `${error.name}: ${error.message}`;
    verdict("entry-verdict", "bad", `NOT VERIFIED: ${why}`);
  }
}

// -- a pending entry: where it stands now ----------------------------------------------------

function showPending(bucket, streamId) {
  const key = `${bucket}/${streamId}`;
  $("pending-title").textContent = `Pending entry: bucket ${bucket}, stream id ${streamId}`;
  $("pending-state").dataset.bucket = bucket;
  $("pending-state").dataset.streamId = streamId;
  $("pending-verdict").className = "verdict";
  $("pending-verdict").replaceChildren();
  const shown = pendingShown.get(key);
  $("pending-json").textContent = shown
    ? JSON.stringify({ staged_ms: shown.time_ms, type: shown.type, outcome: shown.outcome, method: shown.method,
      reason: shown.reason, account: shown.account }, null, 1)
    : "(open it from the log's list to see what it records)";
}

async function askPendingState() {
  const { bucket, streamId } = $("pending-state").dataset;
  const box = $("pending-verdict");
  verdict("pending-verdict", "info", "Asking…");
  try {
    const where = await api(`/api/staged?${new URLSearchParams({ bucket, stream_id: streamId })}`);
    if (where.state === "SEQUENCED" && where.index !== null) {
      verdict("pending-verdict", "ok", `SEQUENCED: now entry ${where.index} of the log. `);
      box.append(el("a", { href: `#entry/${where.index}`, id: "pending-entry-link" }, `Open entry ${where.index} and verify its proof`));
    } else {
      const said = {
        PENDING: "PENDING: staged, not yet in the log (no number, no proof yet).",
        SEQUENCED: "SEQUENCED: in the log; its number is no longer kept (a day after).",
        REFUSED: "REFUSED: not what the service stages; it will never be in the log.",
        UNKNOWN: "UNKNOWN: nothing is staged at this position.",
      };
      verdict("pending-verdict", where.state === "PENDING" ? "info" : "bad", said[where.state] || where.state);
    }
  } catch (error) {
    verdict("pending-verdict", "bad", `Cannot ask: ${error.message}`);
  }
}

// -- the tree head and the consistency with the last visit ----------------------------------

async function showHead() {
  const fields = $("head-fields");
  fields.replaceChildren();
  $("consistency-verdict").className = "verdict";
  let result;
  try {
    result = await trustedHead();
  } catch (error) {
    verdict("head-verdict", "bad", `NOT VERIFIED: ${error.message}`);
    return;
  }
  const { head, pinned, firstUse } = result;
  for (const [name, value] of [
    ["Log", head.origin], ["Entries", String(head.size)], ["Root hash", head.root_hash],
    ["Signed at (UTC)", utc(head.timestamp_ms)], ["Key id", head.key_id], ["Signature", head.signature],
  ]) fields.append(el("dt", {}, name), el("dd", {}, value));
  $("pinned-key").textContent = `${pinned.trim()}\nkey id ${await keyId(pinned)}`;
  verdict("head-verdict", "ok", `VERIFIED: the head's signature checks under the pinned key${firstUse ? " (pinned now, on this first visit: compare its key id below with your operator's)" : ""}.`);
  const stored = localStorage.getItem(lastHeadKey(head.origin));
  const now = { size: head.size, root_hash: head.root_hash, timestamp_ms: head.timestamp_ms };
  if (!stored) {
    localStorage.setItem(lastHeadKey(head.origin), JSON.stringify(now));
    verdict("consistency-verdict", "info", "First visit from this browser: this head is remembered for the next one.");
    return;
  }
  const last = JSON.parse(stored);
  try {
    if (last.size > head.size) throw new ProofError(`the log shrank: ${last.size} entries at your last visit, ${head.size} now`);
    let hashes = [];
    if (last.size > 0 && last.size < head.size) {
      hashes = (await api(`/api/proof/consistency?first=${last.size}&second=${head.size}`)).hashes.map(fromBase64);
    }
    await verifyConsistency(last.size, head.size, hashes, fromBase64(last.root_hash), fromBase64(head.root_hash));
    localStorage.setItem(lastHeadKey(head.origin), JSON.stringify(now));
    verdict("consistency-verdict", "ok", `CONSISTENT: the log of ${head.size} entries extends the ${last.size} you saw on ${utc(last.timestamp_ms)} UTC.`);
  } catch (error) {
    // The last head stays remembered: the alarm is raised again on every visit until explained.
    verdict("consistency-verdict", "bad", `INCONSISTENT with your last visit: ${error.message}`);
  }
}

async function repin() {
  const head = await api("/api/head");
  localStorage.setItem(pinKey(head.origin), head.public_key_pem);
  await showHead();
}

// -- charts (plain SVG) -----------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function barChart(chart, name) {
  const box = el("div", { class: "chart", id: `chart-${name}` });
  const csv = el("a", { href: `/api/charts/${name}.csv`, download: `${name}.csv`, class: "csv" }, "Download CSV");
  box.append(el("h3", {}, chart.title), csv);
  if (chart.extra && Object.keys(chart.extra).length) {
    box.append(el("p", { class: "totals" }, Object.entries(chart.extra).map(([k, v]) => `${k}: ${v}`).join(" · ")));
  }
  const legend = el("div", { class: "legend" });
  chart.series.forEach((s, i) => {
    const total = s.counts.reduce((a, b) => a + b, 0);
    legend.append(el("span", { "data-series": s.label }, el("i", { class: `c${i % 6}` }), `${s.label} (${total})`));
  });
  box.append(legend);
  // Margins leave room for the slanted axis labels (14 characters at most) below the plot and
  // past its right end, so that no label is cut off by the picture's edge.
  const width = 500; const height = 210; const left = 34; const right = 72; const bottom = 70;
  const n = Math.max(chart.labels.length, 1);
  const totals = chart.labels.map((_, i) => chart.series.reduce((a, s) => a + s.counts[i], 0));
  const max = Math.max(1, ...totals);
  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": chart.title });
  const step = (width - left - right) / n;
  for (const tick of [0, max]) {
    const y = height - bottom - (tick / max) * (height - bottom - 10);
    plot.append(svg("line", { x1: left, x2: width - right, y1: y, y2: y, stroke: "#d9dee7" }));
    const t = svg("text", { x: 2, y: y + 3 }); t.textContent = String(tick); plot.append(t);
  }
  chart.labels.forEach((label, i) => {
    let y = height - bottom;
    chart.series.forEach((s, k) => {
      const h = (s.counts[i] / max) * (height - bottom - 10);
      if (h > 0) {
        const bar = svg("rect", { x: left + i * step + 1, y: y - h, width: Math.max(step - 2, 1), height: h, class: `c${k % 6}` });
        const tip = svg("title"); tip.textContent = `${label} ${s.label}: ${s.counts[i]}`; bar.append(tip);
        plot.append(bar);
      }
      y -= h;
    });
    if (n <= 12 || i % Math.ceil(n / 8) === 0) {
      const x = left + i * step + step / 2; // under the middle of its bar
      const t = svg("text", { x, y: height - bottom + 12, transform: `rotate(30 ${x} ${height - bottom + 12})` });
      t.textContent = label.length > 14 ? `${label.slice(0, 13)}…` : label;
      plot.append(t);
    }
  });
  box.append(plot);
  if (chart.note) box.append(el("p", { class: "note" }, chart.note));
  if (!chart.labels.length) box.append(el("p", { class: "note" }, "Nothing to show yet."));
  return box;
}

async function showCharts() {
  $("charts-status").textContent = "Counting…";
  try {
    const charts = await api("/api/charts?days=30");
    const holder = $("charts");
    holder.replaceChildren();
    for (const name of ["outcomes", "methods", "reasons", "refusals", "rate_limits", "erasures"]) {
      if (charts[name]) holder.append(barChart(charts[name], name));
    }
    $("charts-status").textContent = "The last 30 days (UTC), counted from the log's indexes.";
  } catch (error) {
    $("charts-status").textContent = `Cannot count: ${error.message}`;
  }
}

// -- routing ----------------------------------------------------------------------------------

function route() {
  const hash = window.location.hash || "#log";
  const [name, arg, streamArg] = hash.slice(1).split("/");
  const page = pages.includes(name) ? name : "log";
  for (const p of pages) $(`page-${p}`).hidden = p !== page;
  for (const p of ["log", "head", "charts"]) $(`nav-${p}`).classList.toggle("current", p === page || (p === "log" && (page === "entry" || page === "pending")));
  if (page === "log") loadLog(pageStart, pageAfter);
  if (page === "entry") showEntry(Number(arg));
  if (page === "pending") showPending(arg, streamArg);
  if (page === "head") showHead();
  if (page === "charts") showCharts();
}

async function main() {
  me = await api("/api/me");
  $("who").textContent = `${me.tenant} · ${me.role}`;
  for (const type of me.event_types) $("f-types").append(el("option", { value: type }, type));
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); loadLog(0); });
  $("f-clear").addEventListener("click", () => { $("filters").reset(); loadLog(0); });
  $("first-page").addEventListener("click", () => loadLog(0));
  $("next-page").addEventListener("click", () => {
    const { next, after } = $("next-page").dataset;
    loadLog(Number(next), after ? JSON.parse(after) : null);
  });
  $("pending-state").addEventListener("click", askPendingState);
  $("verify-entry").addEventListener("click", verifyEntry);
  $("repin").addEventListener("click", repin);
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "1";
}

main();
