// canary's status page: every rollout, its weight and metric values over time, its event
// timeline, and the operator commands. Plain DOM and inline SVG: no build step, no CDN.
// Everything from the API is inserted as text (textContent), never as HTML.
"use strict";

const POLL_MS = 2000;
const DETAIL_ALL_UP_TO = 12; // more rollouts than this: details of the selected one only
const SVG = "http://www.w3.org/2000/svg";
const journals = new Map(); // rollout id -> {next, events}
let selected = null;
let timer = null;

function token() { return sessionStorage.getItem("canary-token") || ""; }

function notice(text, isError) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function api(method, path) {
  const resp = await fetch(path, {method, headers: {"Authorization": "Bearer " + token()}});
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(body.error || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function clock(iso) { return iso ? new Date(iso).toLocaleTimeString() : "-"; }

async function refresh() {
  if (!token()) { notice("Enter an API token to see the rollouts."); return; }
  try {
    const {rollouts} = await api("GET", "/api/v1/rollouts");
    renderTable(rollouts);
    const shown = rollouts.length <= DETAIL_ALL_UP_TO ? rollouts
      : rollouts.filter((r) => r.name === selected);
    await Promise.all(shown.map(loadJournal));
    renderDetails(shown);
    notice("Updated " + new Date().toLocaleTimeString() + ".");
  } catch (err) {
    notice(err.status === 401 ? "The token was refused: enter a valid one."
      : "Cannot reach the controller: " + err.message, true);
  }
}

function renderTable(rollouts) {
  const body = document.querySelector("#rollouts tbody");
  body.replaceChildren();
  document.getElementById("empty").hidden = rollouts.length > 0;
  for (const r of rollouts) {
    const fill = el("span", {class: "fill"});
    fill.style.width = r.canaryWeight + "%"; // CSSOM: the CSP forbids style attributes
    const bar = el("span", {class: "bar"}, fill);
    const row = el("tr", {"data-name": r.name},
      el("td", {}, r.name), el("td", {}, r.service),
      el("td", {}, (r.stableVersion || "?") + " \u2192 " + r.version),
      el("td", {class: "phase phase-" + r.phase}, r.phase + (r.needsHuman ? " (needs a human)" : "")),
      el("td", {}, r.stage > 0 ? String(r.stage) : "-"),
      el("td", {}, bar, r.canaryWeight + "%"), el("td", {}, clock(r.updatedAt)));
    if (r.name === selected) row.classList.add("selected");
    row.addEventListener("click", () => { selected = r.name; refresh(); });
    body.append(row);
  }
}

async function loadJournal(r) {
  const known = journals.get(r.id) || {next: 0, events: []};
  const page = await api("GET", "/api/v1/rollouts/" + encodeURIComponent(r.name) +
                         "/events?after=" + known.next);
  if (page.id !== r.id) return;
  known.events.push(...page.events);
  known.next = page.next;
  journals.set(r.id, known);
}

function renderDetails(rollouts) {
  const section = document.getElementById("details");
  section.replaceChildren(...rollouts.map(card));
}

function card(r) {
  const events = (journals.get(r.id) || {events: []}).events;
  const actions = el("div", {class: "actions"});
  for (const cmd of ["pause", "resume", "promote", "abort", "retry"]) {
    const b = el("button", {type: "button", "data-command": cmd}, cmd);
    b.addEventListener("click", () => command(r.name, cmd));
    actions.append(b);
  }
  const charts = el("div", {class: "charts"},
    el("div", {class: "chart"}, el("h3", {}, "canary weight (%): confirmed, and wanted (dashed)"),
       weightChart(r, events)));
  for (const [name, series] of metricSeries(events)) {
    charts.append(el("div", {class: "chart", "data-metric": name},
      el("h3", {}, name + (series.threshold ? " (" + series.threshold + ")" : "")),
      metricChart(r, events, series)));
  }
  const timeline = el("ol", {class: "timeline"});
  for (const e of events.slice().reverse()) {
    timeline.append(el("li", {"data-kind": e.kind}, el("time", {}, clock(e.at)),
                       el("span", {class: "kind"}, e.kind), e.message));
  }
  return el("article", {class: "card", "data-rollout": r.name},
    el("h2", {}, r.name + " ", el("span", {class: "phase phase-" + r.phase}, r.phase)),
    el("p", {class: "message"}, r.canaryWeight + "% on " + r.version + ": " +
       (r.message || "") + (r.reason ? " (" + r.reason + ")" : "")),
    actions, charts, el("h3", {}, "events"), timeline);
}

async function command(name, cmd) {
  if (cmd === "abort" && !window.confirm("Abort " + name + " and send all traffic to stable?")) {
    return;
  }
  try {
    const body = await api("POST", "/api/v1/rollouts/" + encodeURIComponent(name) + "/" + cmd);
    notice(name + ": " + body.message + ".");
  } catch (err) {
    notice(name + ": " + cmd + " refused: " + err.message, true);
  }
  refresh();
}

// -- charts -----------------------------------------------------------------------------

const W = 400, H = 140, PAD = 24;

function span(r, events) {
  const start = Date.parse(r.createdAt);
  const end = r.finishedAt ? Date.parse(r.finishedAt) : Math.max(Date.now(),
    ...events.map((e) => Date.parse(e.at)));
  return [start, Math.max(end, start + 1000)];
}

function frame(svg, [t0, t1], yMax, yLabel) {
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.append(svgEl("line", {class: "axis", x1: PAD, y1: H - PAD, x2: W - 4, y2: H - PAD}));
  svg.append(svgEl("line", {class: "axis", x1: PAD, y1: 4, x2: PAD, y2: H - PAD}));
  const label = (x, y, text) => { const t = svgEl("text", {class: "label", x, y}); t.textContent = text; svg.append(t); };
  label(2, 12, yLabel);
  label(2, H - PAD, "0");
  label(PAD, H - 6, clock(new Date(t0).toISOString()));
  label(W - 70, H - 6, clock(new Date(t1).toISOString()));
  const x = (t) => PAD + (W - PAD - 4) * (t - t0) / (t1 - t0);
  const y = (v) => (H - PAD) - (H - PAD - 4) * Math.min(v, yMax) / yMax;
  return [x, y];
}

function steps(points, end, x, y) {
  const out = [];
  points.forEach(([t, v], i) => {
    if (i > 0) out.push(x(t) + "," + y(points[i - 1][1]));
    out.push(x(t) + "," + y(v));
  });
  if (points.length) out.push(x(end) + "," + y(points[points.length - 1][1]));
  return out.join(" ");
}

function weightChart(r, events) {
  const svg = svgEl("svg", {class: "weight-chart", role: "img"});
  const range = span(r, events);
  const [x, y] = frame(svg, range, 100, "100");
  const confirmed = [[range[0], 0]], wanted = [[range[0], 0]];
  for (const e of events) {
    const t = Date.parse(e.at), d = e.data || {};
    if (e.kind === "stage-reached") confirmed.push([t, d.weight]);
    else if (e.kind === "promoted") confirmed.push([t, 100]);
    else if (e.kind === "rolled-back") confirmed.push([t, 0]);
    else if (e.kind === "drift") confirmed.push([t, d.actual]);
    if (e.kind === "stage-started") wanted.push([t, d.weight]);
    else if (e.kind === "promoting") wanted.push([t, 100]);
    else if (e.kind === "rolling-back") wanted.push([t, 0]);
  }
  svg.append(svgEl("polyline", {class: "desired", points: steps(wanted, range[1], x, y)}));
  svg.append(svgEl("polyline", {class: "weight", points: steps(confirmed, range[1], x, y)}));
  return svg;
}

function metricSeries(events) {
  const series = new Map();
  for (const e of events) {
    if (e.kind !== "analysis") continue;
    for (const res of (e.data || {}).results || []) {
      const s = series.get(res.name) || {points: [], threshold: res.threshold};
      if (typeof res.value === "number" && isFinite(res.value)) {
        s.points.push([Date.parse(e.at), res.value, res.outcome]);
      }
      series.set(res.name, s);
    }
  }
  return series;
}

function metricChart(r, events, series) {
  const svg = svgEl("svg", {class: "metric-chart", role: "img"});
  const bounds = [...(series.threshold || "").matchAll(/[<>]= ([-+0-9.e]+)/g)]
    .map((m) => Number(m[1])).filter((v) => isFinite(v));
  const yMax = Math.max(1e-9, ...series.points.map((p) => p[1]), ...bounds) * 1.15;
  const [x, y] = frame(svg, span(r, events), yMax, yMax.toPrecision(2));
  for (const b of bounds) {
    svg.append(svgEl("line", {class: "threshold", x1: PAD, x2: W - 4, y1: y(b), y2: y(b)}));
  }
  svg.append(svgEl("polyline", {class: "value",
    points: series.points.map(([t, v]) => x(t) + "," + y(v)).join(" ")}));
  for (const [t, v, outcome] of series.points) {
    svg.append(svgEl("circle", {class: outcome, cx: x(t), cy: y(v), r: 2.5}));
  }
  return svg;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("token");
    sessionStorage.setItem("canary-token", input.value.trim());
    input.value = "";
    refresh();
  });
  refresh();
  timer = setInterval(refresh, POLL_MS);
});
