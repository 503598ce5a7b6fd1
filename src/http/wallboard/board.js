// The wallboard: figures from /wallboard/events (server-sent events), drawn as they come;
// times in state run on between updates. Colours: service level at or above 80 % good, 60 %
// fair, below poor; a longest wait past the tenant's threshold is poor.
"use strict";

const $ = (sel) => document.querySelector(sel);
let last = null;
let received = 0;

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

function percent(x) {
  return x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`;
}

function level(x) {
  if (x === null || x === undefined) return "";
  return x >= 0.8 ? "good" : x >= 0.6 ? "warn" : "bad";
}

function cell(text, field, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  td.dataset.field = field;
  if (cls) td.className = cls;
  return td;
}

function tile(label, value, field, cls) {
  const div = document.createElement("div");
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = label;
  dd.textContent = value;
  dd.dataset.field = field;
  if (cls) dd.className = cls;
  div.append(dt, dd);
  return div;
}

function draw(s) {
  last = s;
  received = Date.now();
  $("#tenant").textContent = `${s.tenant}`;
  document.title = `Wallboard · ${s.tenant}`;
  const sla = s.serviceLevelSecs * 1000;
  const today = s.figures.today, recent = s.figures.last15Minutes;
  $("#totals").replaceChildren(
    tile("Waiting", s.waiting, "waiting"),
    tile("Longest wait", duration(s.longestWaitMs), "longestWait", s.longestWaitMs > sla ? "bad" : ""),
    tile("Service level (15 min)", percent(recent.serviceLevel), "serviceLevel15", level(recent.serviceLevel)),
    tile("Service level (today)", percent(today.serviceLevel), "serviceLevelToday", level(today.serviceLevel)),
    tile("Offered today", today.offered, "offered"),
    tile("Answered today", today.answered, "answered"),
    tile("Abandoned today", today.abandoned, "abandoned"),
    tile("Occupancy (15 min)", percent(recent.occupancy), "occupancy"),
  );
  const queues = s.queues.map((q) => {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.queue;
    const t = q.figures.today;
    tr.append(
      cell(q.queue, "queue"),
      cell(q.waiting, "waiting", q.waiting > 0 && q.ready === 0 ? "warn" : ""),
      cell(duration(q.longestWaitMs), "longestWait", q.longestWaitMs > sla ? "bad" : ""),
      cell(duration(q.estimatedWaitMs), "estimatedWait"),
      cell(q.ready, "ready"),
      cell(q.busy, "busy"),
      cell(t.offered, "offered"),
      cell(t.answered, "answered"),
      cell(t.abandoned, "abandoned"),
      cell(percent(t.serviceLevel), "serviceLevel", level(t.serviceLevel)),
      cell(duration(t.averageSpeedOfAnswerMs), "speedOfAnswer"),
      cell(duration(t.averageHandleMs), "handleTime"),
    );
    return tr;
  });
  $("#queues tbody").replaceChildren(...queues);
  const agents = s.agents.filter((a) => a.state !== "LoggedOut").map((a) => {
    const tr = document.createElement("tr");
    tr.dataset.agent = a.agentId;
    const state = document.createElement("span");
    const shown = a.onCall ? "OnCall" : a.state;
    state.className = `state ${shown}`;
    state.textContent = a.onCall ? "On a call" : a.state.replace(/([a-z])([A-Z])/g, "$1 $2");
    const stateCell = cell("", "state");
    stateCell.dataset.state = shown;
    stateCell.append(state);
    if (a.reason) state.title = a.reason;
    const t = a.figures.today;
    const since = cell(duration(a.timeInStateMs), "timeInState");
    since.dataset.ms = a.timeInStateMs;
    tr.append(
      cell(a.agentId, "agent"),
      cell(a.dn, "dn"),
      stateCell,
      since,
      cell(t.answered, "answered"),
      cell(duration(t.averageHandleMs), "handleTime"),
      cell(percent(a.figures.last15Minutes.occupancy), "occupancy"),
    );
    return tr;
  });
  $("#agents tbody").replaceChildren(...agents);
  $("#legend").textContent =
    `Service level: answered within ${s.serviceLevelSecs} s / (answered + abandoned after ${s.shortAbandonSecs} s). ` +
    `Today since midnight, ${s.timeZone}.`;
}

// Times in state run on between updates.
setInterval(() => {
  if (!last) return;
  const gone = Date.now() - received;
  document.querySelectorAll('#agents td[data-field="timeInState"]').forEach((td) => {
    td.textContent = duration(Number(td.dataset.ms) + gone);
  });
  $("#clock").textContent = new Date().toLocaleTimeString();
}, 1000);

function connect() {
  const events = new EventSource("/wallboard/events");
  events.onopen = () => {
    $("#link").textContent = "live";
    $("#link").classList.remove("down");
  };
  events.onmessage = (m) => draw(JSON.parse(m.data));
  events.onerror = () => {
    $("#link").textContent = "reconnecting…";
    $("#link").classList.add("down");
    if (events.readyState === EventSource.CLOSED) {
      // Signed out, or the node restarted: the page decides.
      setTimeout(() => location.reload(), 3000);
    }
  };
}

connect();
