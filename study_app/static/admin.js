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

function redraw(stats) {
  for (const el of document.querySelectorAll("[data-stat]")) {
    el.textContent = show(lookup(stats, el.dataset.stat), el.dataset.format);
  }
  const svg = document.getElementById("timeline");
  const peak = Math.max(0, ...stats.timeline.map((b) => b.responses));
  svg.replaceChildren(...stats.timeline.map((b, i) => {
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const h = peak ? (58 * b.responses) / peak : 0;
    r.setAttribute("x", i * 10);
    r.setAttribute("y", 60 - h);
    r.setAttribute("width", 9);
    r.setAttribute("height", h);
    return r;
  }));
  const body = document.querySelector("#recent tbody");
  body.replaceChildren(...stats.recent_sessions.map((s) => {
    const tr = document.createElement("tr");
    tr.append(cell(s.session), cell(s.list), cell(s.status), cell(s.prolific), cell(s.stage), cell(s.progress), cell(s.last_seen),
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
  const tick = async () => {
    try {
      const r = await fetch(root.dataset.statsUrl, { headers: { Accept: "application/json" } });
      if (r.status === 401) { location.reload(); return; }
      if (r.ok) redraw(await r.json());
    } catch (e) { /* keep the last numbers; try again next tick */ }
  };
  setInterval(tick, 5000);
});
