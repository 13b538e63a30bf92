// Dashboard auto-refresh: fetch the stats JSON every 5 s and update the page in place.
"use strict";

function lookup(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function show(value, format) {
  if (value === null || value === undefined) return "–";
  if (format === "percent") return Math.round(100 * value) + "%";
  if (format === "minutes") return (value / 60).toFixed(1) + " min";
  return String(value);
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

const SVG = "http://www.w3.org/2000/svg";

function svgNode(tag, attrs, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

// Responses per time bin as bars, with a count axis (0 and the peak) and a time axis (the
// first bin's start and the last one's end): a bare row of bars said neither (issue 37).
function drawTimeline(svg, timeline) {
  const [left, right, top, bottom] = [34, 296, 6, 70];
  const peak = Math.max(0, ...timeline.map((b) => b.responses));
  const nodes = [
    svgNode("line", { class: "axis", x1: left, y1: top, x2: left, y2: bottom }),
    svgNode("line", { class: "axis", x1: left, y1: bottom, x2: right, y2: bottom }),
    svgNode("text", { class: "tick", x: left - 4, y: bottom, "text-anchor": "end" }, "0"),
    svgNode("text", { class: "tick", x: left - 4, y: top + 6, "text-anchor": "end" }, String(peak)),
    svgNode("text", { class: "tick", x: 2, y: (top + bottom) / 2, "text-anchor": "start" }, "n"),
  ];
  if (timeline.length) {
    const width = (right - left) / timeline.length;
    const first = new Date(timeline[0].start);
    const step = timeline.length > 1 ? new Date(timeline[1].start) - first : 0;
    const end = new Date(first.getTime() + step * timeline.length);
    const clock = (d) => d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    timeline.forEach((b, i) => {
      const h = peak ? ((bottom - top) * b.responses) / peak : 0;
      const bar = svgNode("rect", { x: left + i * width + 0.5, y: bottom - h, width: Math.max(1, width - 1), height: h });
      bar.append(svgNode("title", {}, `${new Date(b.start).toLocaleString()}: ${b.responses}`));
      nodes.push(bar);
    });
    nodes.push(svgNode("text", { class: "tick", x: left, y: bottom + 14, "text-anchor": "start" }, clock(first)));
    nodes.push(svgNode("text", { class: "tick", x: right, y: bottom + 14, "text-anchor": "end" }, clock(end)));
  } else {
    nodes.push(svgNode("text", { class: "tick", x: (left + right) / 2, y: (top + bottom) / 2, "text-anchor": "middle" },
      "no responses yet"));
  }
  svg.replaceChildren(...nodes);
}

function redraw(stats) {
  for (const el of document.querySelectorAll("[data-stat]")) {
    el.textContent = show(lookup(stats, el.dataset.stat), el.dataset.format);
  }
  drawTimeline(document.getElementById("timeline"), stats.timeline);
  document.getElementById("pilot-mark").hidden = !stats.pilot;
  const body = document.querySelector("#recent tbody");
  body.replaceChildren(...stats.recent_sessions.map((s) => {
    const tr = document.createElement("tr");
    tr.append(cell(s.session), cell(s.who), cell(s.list), cell(s.status), cell(s.prolific), cell(s.stage), cell(s.progress), cell(s.last_seen),
      cell(s.events.join(", ")), cell(s.questionnaire));
    return tr;
  }));
  document.querySelector("#per-feature tbody").replaceChildren(...Object.entries(stats.per_feature).map(([f, counts]) => {
    const tr = document.createElement("tr");
    tr.append(cell(f), cell(Object.entries(counts).map(([t, n]) => `${t}: ${n}`).join(", ")));
    return tr;
  }));
  document.getElementById("updated").textContent = "Last update " + new Date().toLocaleTimeString();
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const svg = document.getElementById("timeline");
  drawTimeline(svg, JSON.parse(svg.dataset.timeline || "[]"));
  const tick = async () => {
    try {
      const r = await fetch(root.dataset.statsUrl, { headers: { Accept: "application/json" } });
      if (r.status === 401) { location.reload(); return; }
      if (r.ok) redraw(await r.json());
    } catch (e) { /* keep the last numbers; try again next tick */ }
  };
  setInterval(tick, 5000);
});
