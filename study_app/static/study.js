// The participant pages' only script (no inline script: the CSP forbids it).
// The server owns the session; this file plays clips, collects one answer at a time
// and submits it with an idempotency key, retrying until the server has it.
"use strict";

// The page's words in the study's language: i18n.py puts the catalog's translations of every
// _("...") text of this file on <body> (no inline script: the CSP forbids it). "{name}"
// takes a value; a text the catalog lacks is shown as written.
const STRINGS = (() => {
  try { return JSON.parse(document.body.dataset.strings || "{}"); } catch (e) { return {}; }
})();
function _(text, values = {}) {
  return (STRINGS[text] || text).replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
}

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text; // textContent, never innerHTML: labels stay inert text
  return node;
}

// What this tab has played to the end, by trial and clip URL (the URL is each session's
// own, api._ClipUrls), so that a reload or Back keeps the clips already heard in the trial
// on screen (issue 37); a clip met again in a later trial is to be heard again there. Not
// the server's record: a clip served in full may only have been preloaded. The server
// still checks every answer.
function wasHeard(url) {
  try { return JSON.parse(sessionStorage.getItem("heard") || "[]").includes(url); } catch (e) { return false; }
}
function rememberHeard(url) {
  try {
    const heard = JSON.parse(sessionStorage.getItem("heard") || "[]").filter((u) => u !== url);
    sessionStorage.setItem("heard", JSON.stringify([...heard.slice(-200), url]));
  } catch (e) { /* storage off: a reload asks to listen again, as before */ }
}

// A clip player: play/pause, progress, "played through" tracking, and a retry path.
// ``heardAs`` (a trial's clip): remembered once played to the end, and shown played if it was.
function makePlayer(container, url, label, onEnded, heardAs = null) {
  const audio = new Audio();
  audio.preload = "auto";
  audio.src = url;
  // Named in words for screen readers ("Play Clip A"); the symbol is for the eyes only.
  const button = el("button", { type: "button", class: "play", "aria-label": _("Play {clip}", { clip: label }) }, "▶ " + label);
  const bar = el("progress", { value: "0", max: "1", "aria-label": _("{clip} progress", { clip: label }) });
  const retry = el("button", { type: "button", class: "retry", hidden: "" }, _("Audio failed to load — retry"));
  const box = el("div", { class: "clip" });
  box.append(button, bar, retry);
  container.append(box);
  let plays = 0;
  button.addEventListener("click", () => {
    if (audio.paused) {
      for (const other of players) if (other !== audio && !other.paused) other.pause();
      audio.play().catch(() => showRetry());
    } else {
      audio.pause();
    }
  });
  const show = (symbol, name) => {
    button.textContent = symbol + " " + label;
    button.setAttribute("aria-label", name);
  };
  const playName = () => (plays ? _("Play again {clip}", { clip: label }) : _("Play {clip}", { clip: label }));
  audio.addEventListener("play", () => show("❚❚", _("Pause {clip}", { clip: label })));
  audio.addEventListener("pause", () => { if (!audio.ended) show(plays ? "↻" : "▶", playName()); });
  audio.addEventListener("timeupdate", () => {
    if (audio.duration) bar.value = audio.currentTime / audio.duration;
  });
  const markPlayed = () => {
    plays += 1;
    bar.value = 1;
    box.classList.add("played");
    show("↻", playName());
  };
  audio.addEventListener("ended", () => {
    markPlayed();
    if (heardAs) rememberHeard(heardAs);
    onEnded(plays);
  });
  if (heardAs && wasHeard(heardAs)) markPlayed();
  function showRetry() {
    retry.hidden = false;
    postEvent("audio_error", { clip: label });
  }
  audio.addEventListener("error", showRetry);
  retry.addEventListener("click", () => {
    retry.hidden = true;
    audio.load();
  });
  players.push(audio);
  return audio;
}
const players = [];
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

// A headphone check's three sounds, numbered as the options name them: the one playing is
// lit, so nobody has to count noises to know which one they heard (issue 34.4). Polled
// each frame while playing: "timeupdate" comes only every 250 ms, a quarter of a sound.
function showSegments(box, audio, segments) {
  const marks = segments.map((_segment, i) => el("span", { class: "segment" }, _("Sound {n}", { n: i + 1 })));
  const row = el("div", { class: "segments", "aria-hidden": "true" });
  row.append(...marks);
  box.append(row);
  const light = () => {
    const now = audio.currentTime;
    segments.forEach(([start, end], i) => {
      marks[i].classList.toggle("playing", now >= start && now < end); // paused: where it stopped
    });
  };
  const tick = () => { light(); if (!audio.paused && !audio.ended) requestAnimationFrame(tick); };
  audio.addEventListener("play", () => requestAnimationFrame(tick));
  for (const name of ["pause", "ended", "seeked", "timeupdate"]) audio.addEventListener(name, light);
}

let eventUrl = null;
function postEvent(kind, data) {
  if (!eventUrl) return;
  fetch(eventUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify({ kind, data, client_ts: new Date().toISOString() }),
  }).catch(() => {});
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function runTrials(root) {
  const trialUrl = root.dataset.trialUrl;
  const answerUrl = root.dataset.answerUrl;
  eventUrl = root.dataset.eventUrl;
  const $ = (id) => document.getElementById(id);
  const submitButton = $("submit");
  const status = $("status");
  let state = null;
  let keyedGroup = null; // the question a number key answered last (see the keydown handler)
  const preloaded = [];

  // A page that goes on to the next stage is hidden for an instant as it unloads, which the
  // dashboard read as looking away (issue 37). Only a page still hidden a second later is
  // reported, with when it was hidden; "page_visible" says for how long.
  let hiddenAt = null;
  let hiddenTimer = null;
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      hiddenAt = new Date();
      const since = hiddenAt.toISOString();
      hiddenTimer = setTimeout(() => { hiddenTimer = null; postEvent("page_hidden", { since }); }, 1000);
    } else if (hiddenTimer !== null) {
      clearTimeout(hiddenTimer); // a blink: nothing to report
      hiddenTimer = null;
    } else if (hiddenAt !== null) {
      postEvent("page_visible", { hidden_ms: Math.round(new Date() - hiddenAt) });
    }
  });

  async function load() {
    status.textContent = "";
    let data;
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await fetch(trialUrl, { headers: { Accept: "application/json" } });
        if (r.status === 401) { location.reload(); return; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        data = await r.json();
        break;
      } catch (e) {
        status.textContent = _("Connection problem — retrying…");
        await sleep(Math.min(10000, 500 * 2 ** attempt));
      }
    }
    if (data.redirect) { location.assign(data.redirect); return; }
    render(data);
  }

  function render(data) {
    // The page's own players (the headphone check's example) stay; a trial's go with it.
    for (const p of players.splice(0)) { p.pause(); if (p.keep) players.push(p); }
    const t = data.trial;
    keyedGroup = null;
    state = { trial: t, plays: {}, required: new Set(), answer: null, rating: null, confidence: null,
              sliders: {}, enabledAt: null, key: newKey(), busy: false };
    root.dataset.trial = t.id; // which trial the page shows (tests and support staff read it)
    if ($("comment")) $("comment").value = ""; // a comment belongs to the trial it was written under
    $("progress").max = data.total;
    $("progress").value = data.position;
    // "Trial 3 of 25" counts the main trials only; practice and the check say their own.
    const counted = {
      main: _("Trial {n} of {total}"), practice: _("Practice {n} of {total}"), screening: _("Check {n} of {total}"),
    }[t.phase];
    $("step").textContent = counted && data.steps ? counted.replace("{n}", data.step).replace("{total}", data.steps) : "";
    $("phase").textContent = t.phase === "practice" ? _("Practice") : t.phase === "screening" ? _("Headphone check") : "";
    // The step indicator at the top follows the phase (the page came as the check or the trials).
    for (const li of document.querySelectorAll(".steps li")) {
      if (li.dataset.step === t.phase) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
    }
    $("question").textContent = t.question;
    resetProblem();
    $("feedback").textContent = "";
    for (const id of ["references", "candidates", "options", "rating", "confidence"]) {
      $(id).replaceChildren();
      $(id).classList.remove("scale-box");
    }
    // Comparison trials: the examples set apart from the clips to choose among; MUSHRA: the
    // reference apart from the clips to rate.
    const grouped = t.references.length > 0 && t.candidates.length > 0;
    const titles = t.sliders ? [_("Reference"), _("Clips to rate")]
      : t.kind === "abx" ? [_("A and B"), _("X: one of the two")] : [_("Examples"), _("Clips to compare")];
    for (const [id, title] of [["references", titles[0]], ["candidates", titles[1]]]) {
      if (grouped) $(id).append(el("h2", { class: "group-title" }, title));
      if (grouped) $(id).setAttribute("aria-label", title); else $(id).removeAttribute("aria-label");
    }
    const single = t.sliders ? _("Reference") : _("Clip");
    const refName = (i) => t.kind === "abx" ? "ABX"[i] : t.references.length > 1 ? _("Example {n}", { n: i + 1 }) : single;
    // "Clip A" as the package's options name it (the builder's catalog says it the same way).
    const candName = (i) => t.kind === "abx" ? "X" : t.sliders && t.candidates.length === 1 ? _("Clip")
      : _("Clip {letter}", { letter: LETTERS[i] });
    const kept = t.id + " " + (data.attempt || 0); // what this tab keeps of the trial over a reload
    const clips = [
      ...t.references.map((c, i) => [c, $("references"), refName(i)]),
      ...t.candidates.map((c, i) => [c, $("candidates"), candName(i)]),
    ];
    for (const [clip, group, label] of clips) {
      // A slider trial rates each candidate on its own row: the clip, then its slider.
      const box = t.sliders && group === $("candidates") ? el("div", { class: "slider-row" }) : group;
      if (box !== group) group.append(box);
      state.required.add(clip.id);
      const heardAs = kept + " " + clip.url; // a retried check is heard anew
      if (wasHeard(heardAs)) state.plays[clip.id] = 1;
      const audio = makePlayer(box, clip.url, label, (n) => {
        state.plays[clip.id] = n;
        update();
      }, heardAs);
      if (box === $("references") && (t.segments || []).length) showSegments(box, audio, t.segments);
      if (box !== group) slider(box, clip, label, t.sliders, kept);
    }
    t.options.forEach((o, i) => {
      const b = el("button", { type: "button", class: "option", "aria-pressed": "false", "data-key": String(i + 1) }, o.text);
      b.addEventListener("click", () => { state.answer = o.id; select($("options"), b); update(); });
      $("options").append(b);
    });
    if (t.rating) scale($("rating"), t.rating, _("Your rating"), (v) => { state.rating = v; });
    if (t.confidence) scale($("confidence"), t.confidence, _("How sure are you?"), (v) => { state.confidence = v; });
    for (const url of data.preload || []) {
      const a = new Audio();
      a.preload = "auto";
      a.src = url;
      preloaded.push(a);
      if (preloaded.length > 12) preloaded.shift();
    }
    update();
    $("question").focus();
  }

  // An ordinal scale: its numbers always on one line, the end labels beside them on a wide
  // screen and under the two ends on a phone (study.css), read in order: low end, numbers, high end.
  function scale(box, spec, title, set) {
    box.classList.add("scale-box");
    box.append(el("span", { class: "scale-title" }, title));
    if (spec.min_label) box.append(el("span", { class: "scale-label min" }, spec.min_label));
    const row = el("div", { class: "scale-row" });
    for (let v = spec.min; v <= spec.max; v++) {
      const b = el("button", { type: "button", class: "option scale", "aria-pressed": "false", "data-key": String(v) }, String(v));
      b.addEventListener("click", () => { set(v); select(box, b); update(); });
      row.append(b);
    }
    box.append(row);
    if (spec.max_label) box.append(el("span", { class: "scale-label max" }, spec.max_label));
  }

  // A 0-100 slider for one clip. It starts unset (no thumb, "–"): only a slider the
  // participant moved counts as an answer, never its starting place. It opens once its clip
  // has been played to the end; arrow keys move it (the number keys stay with buttons).
  // The values set are kept in the tab's sessionStorage by trial, so a reload or Back
  // brings them back with the clips heard (issue 36); the answer sent is still the page's.
  function keptSliders(kept) {
    try { return JSON.parse(sessionStorage.getItem("sliders " + kept) || "{}"); } catch (e) { return {}; }
  }
  function keepSlider(kept, clipId, v) {
    try {
      const values = keptSliders(kept);
      if (v === undefined) delete values[clipId]; else values[clipId] = v;
      sessionStorage.setItem("sliders " + kept, JSON.stringify(values));
    } catch (e) { /* storage off: a reload asks for the sliders again */ }
  }

  function slider(row, clip, label, spec, kept) {
    const middle = String(Math.round((spec.min + spec.max) / 2)); // where the keys start from
    const input = el("input", {
      type: "range", class: "slider unset", min: String(spec.min), max: String(spec.max), step: "1",
      value: middle, "aria-label": _("Your rating of {clip}", { clip: label }),
      "data-clip": clip.id, "aria-valuetext": _("not rated yet"),
    });
    const value = el("output", { class: "slider-value", "aria-hidden": "true" }, "–");
    const show = (v) => {
      if (v === undefined) {
        delete state.sliders[clip.id];
        input.value = middle;
        input.classList.add("unset");
        input.setAttribute("aria-valuetext", _("not rated yet"));
        value.textContent = "–";
      } else {
        state.sliders[clip.id] = v;
        input.value = String(v);
        input.classList.remove("unset");
        input.setAttribute("aria-valuetext", String(v));
        value.textContent = String(v);
      }
      keepSlider(kept, clip.id, v);
      update();
    };
    const set = () => show(Number(input.value));
    // A swipe that began on the slider to scroll the page (the browser cancels the pointer,
    // then still sends its own input and change) is no rating: the slider goes back to what
    // it was, unset included, and takes no value until the next touch or key.
    let before = undefined;
    let swiped = false;
    for (const kind of ["input", "change", "pointerup"]) {
      input.addEventListener(kind, () => { if (!input.disabled && !swiped) set(); });
    }
    input.addEventListener("pointercancel", () => { swiped = true; show(before); });
    input.addEventListener("keydown", () => { swiped = false; });
    // A tap puts the slider where the finger is, in every browser: the thumb of an unset
    // slider is hidden, so there is nothing to drag (a touch tap did not move it in Chromium).
    input.addEventListener("pointerdown", (e) => {
      if (input.disabled) return;
      swiped = false;
      before = state.sliders[clip.id];
      const box = input.getBoundingClientRect();
      const at = Math.min(1, Math.max(0, (e.clientX - box.left) / box.width));
      input.value = String(Math.round(spec.min + at * (spec.max - spec.min)));
      set();
    });
    const labels = el("div", { class: "slider-labels", "aria-hidden": "true" });
    for (const text of spec.labels || []) labels.append(el("span", {}, text));
    const box = el("div", { class: "slider-box" });
    box.append(input, labels);
    row.append(box, value);
    const restored = keptSliders(kept)[clip.id];
    if (Number.isInteger(restored) && restored >= spec.min && restored <= spec.max && state.plays[clip.id] >= 1) {
      show(restored);
    }
  }

  function select(box, chosen) {
    for (const b of box.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === chosen));
  }

  function allPlayed() {
    return [...state.required].every((id) => (state.plays[id] || 0) >= 1);
  }

  function update() {
    const played = allPlayed();
    if (played && state.enabledAt === null) state.enabledAt = performance.now();
    for (const b of document.querySelectorAll("#options button, #rating button, #confidence button")) b.disabled = !played;
    // A slider opens once its clip has played through, and closes while the answer is sent
    // (the answer sent is the one on screen).
    for (const s of document.querySelectorAll("#candidates input.slider")) s.disabled = !(state.plays[s.dataset.clip] >= 1) || state.busy;
    const t = state.trial;
    const rated = !t.sliders || t.candidates.every((c) => state.sliders[c.id] !== undefined);
    $("hint").textContent = !played ? _("Listen to every clip to the end to answer.")
      : rated ? "" : _("Move every slider to rate each clip.");
    const answered = (t.options.length === 0 || state.answer !== null) && (!t.rating || state.rating !== null) &&
      (!t.confidence || state.confidence !== null) && rated;
    submitButton.disabled = !(played && answered) || state.busy;
  }

  async function submit() {
    if (submitButton.disabled || state.busy) return;
    state.busy = true;
    update();
    const body = JSON.stringify({
      idempotency_key: state.key,
      trial_id: state.trial.id,
      answer: state.answer,
      rating: state.rating,
      confidence: state.confidence,
      sliders: state.trial.sliders ? state.sliders : undefined,
      comment: $("comment") ? $("comment").value.trim().slice(0, 500) || undefined : undefined,
      rt_ms: Math.round(performance.now() - state.enabledAt),
      plays: state.plays,
      client_ts: new Date().toISOString(),
    });
    // Retry until the server answers: the same key makes a repeat harmless.
    for (let attempt = 0; ; attempt++) {
      let r;
      try {
        r = await fetch(answerUrl, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          body,
        });
      } catch (e) {
        r = null;
      }
      if (r && r.ok) {
        const result = await r.json();
        status.textContent = "";
        if (result.feedback) {
          $("feedback").textContent = result.feedback.correct ? _("Correct!") : _("Not quite — the right answer was another one.");
          await sleep(1500);
        }
        await load();
        return;
      }
      if (r && r.status === 409) { postEvent("resync", {}); await load(); return; }
      // 400: the answer is not valid; 425: the server has not yet served every clip in full
      // to this session, or the trial's audio could not have been heard yet (its check names
      // no time). Either way the message says what to do, nothing is stored, and the answer
      // stays on the page to send again. A page that played every clip to its end fetched
      // all of it, so is not refused.
      if (r && (r.status === 400 || r.status === 425)) {
        const err = await r.json().catch(() => ({}));
        status.textContent = err.error || _("That answer could not be saved.");
        if (/CSRF/.test(err.error || "")) { location.reload(); return; }
        state.busy = false;
        update();
        return;
      }
      status.textContent = _("Connection problem — your answer is kept and will be sent…");
      if (attempt === 0) postEvent("network_retry", {});
      await sleep(Math.min(10000, 500 * 2 ** attempt));
    }
  }

  // "Problem with the audio?": a report about the trial on screen, kept with its answer.
  function resetProblem() {
    const box = $("problem");
    if (!box) return;
    box.open = false;
    $("problem-form").reset();
    $("problem-sent").hidden = true;
    $("problem-failed").hidden = true;
  }
  const problemForm = $("problem-form");
  if (problemForm) {
    problemForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const send = problemForm.querySelector("button");
      send.disabled = true;
      const body = JSON.stringify({
        kind: "clip_problem",
        data: { trial: state.trial.id, reason: $("problem-reason").value, text: $("problem-text").value.slice(0, 500) },
        client_ts: new Date().toISOString(),
      });
      let ok = false;
      try {
        const r = await fetch(eventUrl, {
          method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() }, body,
        });
        ok = r.ok;
      } catch (err) { ok = false; }
      send.disabled = false;
      $("problem-sent").hidden = !ok;
      $("problem-failed").hidden = ok;
      if (ok) $("problem-text").value = "";
    });
  }

  submitButton.addEventListener("click", submit);
  document.addEventListener("keydown", (e) => {
    if (["TEXTAREA", "INPUT", "SELECT"].includes(e.target.tagName)) return;
    // Number keys answer the first question of the trial still open (the options, the
    // rating, then "How sure are you?"); once all are answered, they change the one last
    // answered by key. The choice moves focus off the play button, so that Enter then
    // submits instead of replaying the clip.
    const groups = ["options", "rating", "confidence"].filter((id) => document.querySelector(`#${id} button`));
    const open = groups.find((id) => !$(id).querySelector('button[aria-pressed="true"]'));
    const group = open || keyedGroup || groups[groups.length - 1];
    const target = group && $(group).querySelector(`button[data-key="${e.key}"]`);
    if (target && !target.disabled) {
      keyedGroup = group;
      target.click();
      if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
      return;
    }
    if (e.key === "Enter" && e.target === document.body) submit();
  });
  load();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("[data-screen-size]")) {
    input.value = `${screen.width}x${screen.height}`;
  }
  for (const box of document.querySelectorAll(".player[data-clip-url]")) {
    // A player may hold back a button until its clip has played to the end (the volume
    // page: a volume set without hearing the test sound sets nothing).
    const unlocks = box.dataset.unlocks ? document.getElementById(box.dataset.unlocks) : null;
    const audio = makePlayer(box, box.dataset.clipUrl, box.dataset.label || _("Play"), () => {
      if (!unlocks) return;
      unlocks.disabled = false;
      const hint = document.getElementById("volume-hint");
      if (hint) hint.hidden = true;
    });
    audio.keep = true;
    if (box.dataset.segments) showSegments(box, audio, JSON.parse(box.dataset.segments));
  }
  const runner = document.getElementById("runner");
  if (runner) runTrials(runner);
});
