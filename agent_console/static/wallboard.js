// The supervisor wallboard: live queue figures with thresholds, the agent grid,
// and forcing an agent's state. Any event refreshes the figures (coalesced).
"use strict";

const W = { settings: null, queues: [], agents: [], calls: {}, fetchedAt: Date.now(), pending: null };
const MONITOR_EXT = "ccserver.monitorExt";

const STATE_ORDER = ["available", "reserved", "on-call", "wrap-up", "not-ready", "logged-out"];

// Colour of a figure against its threshold: ok, warn or alert.
function level(value, warn, alert, higherIsWorse = true) {
  if (value === null || value === undefined) return "none";
  if (higherIsWorse) return value >= alert ? "alert" : value >= warn ? "warn" : "ok";
  return value <= alert ? "alert" : value <= warn ? "warn" : "ok";
}

function figure(labelKey, value, lvl, name) {
  return el("div", { class: `figure ${lvl}`, dataset: { figure: name } },
    el("span", { class: "value" }, value), el("span", { class: "label", "data-i18n": labelKey }, t(labelKey)));
}

function renderQueues() {
  const since = (Date.now() - W.fetchedAt) / 1000;
  const tiles = W.queues.map((q) => {
    const cfg = W.settings.queues[q.queue] || { service_level_seconds: 20, service_level_target: 0.8 };
    const longest = q.waiting > 0 ? q.longest_wait + since : 0;
    const slTarget = q.service_level_target ?? cfg.service_level_target;
    const byState = STATE_ORDER.filter((s) => q.agents[s]).map((s) =>
      el("span", { class: "state-badge small", dataset: { state: s } }, `${stateLabel(s)} ${q.agents[s]}`));
    return el("section", { class: "tile", dataset: { queue: q.queue } },
      el("h3", {}, q.queue),
      el("div", { class: "figures" },
        figure("wb.waiting", q.waiting, level(q.waiting, 1, 3), "waiting"),
        figure("wb.longest", duration(longest), level(longest, cfg.service_level_seconds / 2, cfg.service_level_seconds), "longest"),
        figure("wb.sl", percent(q.service_level), level(q.service_level, slTarget, slTarget - 0.1, false), "sl"),
        figure("wb.asa", duration(q.asa), level(q.asa, cfg.service_level_seconds / 2, cfg.service_level_seconds), "asa"),
        figure("wb.aht", duration(q.aht), "none", "aht"),
        figure("wb.abandon", percent(q.abandon_rate), level(q.abandon_rate, 0.05, 0.1), "abandon"),
        figure("wb.answered", q.answered, "none", "answered")),
      el("div", { class: "by-state" }, byState),
      el("div", { class: "target" }, `${t("wb.sl")} ${t("wb.target")}: ${percent(slTarget)} / ${cfg.service_level_seconds} s`));
  });
  document.getElementById("queues").replaceChildren(...tiles);
}

function reasonSelect(ext) {
  return el("select", { "aria-label": t("agent.reason"), dataset: { reasonFor: ext } },
    Object.entries(W.settings.reason_codes).map(([code, label]) => el("option", { value: code }, label)));
}

async function force(ext, what) {
  try {
    if (what === "not-ready") {
      const reason = document.querySelector(`[data-reason-for="${ext}"]`).value;
      await api("POST", `/api/agents/${ext}/not-ready`, { reason });
    } else if (what === "logout") {
      await api("POST", `/api/agents/${ext}/logout`, { reason: "supervisor" });
    } else {
      await api("POST", `/api/agents/${ext}/ready`);
    }
  } catch (err) { showError(err); }
  refresh();
}

// Listen, whisper or barge on an agent's call: the supervisor's own phone rings in.
async function monitor(contactId, mode) {
  const extension = document.getElementById("mon-ext").value.trim();
  try {
    if (mode === "stop") {
      await api("DELETE", `/api/calls/${contactId}/monitor`);
    } else if (!extension) {
      document.getElementById("mon-ext").focus();
      throw new Error(t("mon.noext"));
    } else {
      await api("POST", `/api/calls/${contactId}/monitor`, { extension, mode });
    }
  } catch (err) { showError(err); }
  refresh();
}

function monitorButtons(a) {
  const call = a.contact_id && W.calls[a.contact_id];
  if (!call || a.state !== "on-call") return [];
  const now = call.monitor;  // {target, connected, mode} while a supervisor's phone is in
  return [
    ...["listen", "whisper", "barge"].map((mode) => el("button", {
      class: now && now.mode === mode ? "primary" : "", dataset: { monitor: mode },
      onclick: () => monitor(a.contact_id, mode),
    }, t(`mon.${mode}`))),
    now ? el("button", { class: "danger", dataset: { monitor: "stop" }, onclick: () => monitor(a.contact_id, "stop") }, t("mon.stop")) : null,
  ];
}

function renderAgents() {
  const since = (Date.now() - W.fetchedAt) / 1000;
  const rows = W.agents.map((a) => {
    const longState = a.state === "not-ready" ? 900 : a.state === "wrap-up" ? 60 : null;
    const cls = longState !== null && a.seconds_in_state + since > longState ? "late" : "";
    const loggedOut = a.state === "logged-out";
    const watched = a.contact_id && W.calls[a.contact_id] && W.calls[a.contact_id].monitor;
    return el("tr", {
      dataset: {
        agent: a.agent, state: a.state,
        monitor: watched ? watched.mode : "", monitorConnected: watched ? String(!!watched.connected) : "",
      },
    },
      el("td", {}, a.agent), el("td", {}, a.name),
      el("td", {}, el("span", { class: "state-badge", dataset: { state: a.state } }, stateLabel(a.state))),
      el("td", {}, a.reason ? (W.settings.reason_codes[a.reason] || a.reason) : ""),
      loggedOut ? el("td", {}, "")  // time logged out says nothing on a wallboard
        : el("td", { class: cls, dataset: { tick: a.seconds_in_state } }, duration(a.seconds_in_state + since)),
      el("td", {}, a.contact_id ? `${a.queue || ""} · ${a.contact_id.slice(0, 8)}` : ""),
      el("td", { class: "actions" },
        el("button", { disabled: loggedOut || a.state === "available", onclick: () => force(a.agent, "ready") }, t("agent.ready")),
        reasonSelect(a.agent),
        el("button", { disabled: loggedOut, onclick: () => force(a.agent, "not-ready") }, t("agent.notready")),
        el("button", { class: "danger", disabled: loggedOut, onclick: () => force(a.agent, "logout") }, t("agent.logout"))),
      el("td", { class: "monitor" }, monitorButtons(a)));
  });
  document.getElementById("agents").replaceChildren(...rows);
}

// Only the clocks move between refreshes (the selects keep what the supervisor chose).
function tickAgents() {
  const since = (Date.now() - W.fetchedAt) / 1000;
  for (const cell of document.querySelectorAll("#agents [data-tick]")) {
    cell.textContent = duration(Number(cell.dataset.tick) + since);
  }
}

async function refresh() {
  try {
    const [queues, agents, calls] = await Promise.all([
      api("GET", "/api/queues"), api("GET", "/api/agents"), api("GET", "/api/calls")]);
    W.queues = queues;
    W.agents = agents;
    W.calls = Object.fromEntries(calls.map((c) => [c.contact_id, c]));
    W.fetchedAt = Date.now();
    renderQueues();
    renderAgents();
  } catch (err) { showError(err); }
}

// The last agent state changes, newest first: short states (ringing, wrap-up)
// stay readable after the grid has moved on.
function noteChange(ev) {
  const list = document.getElementById("changes");
  const name = (W.settings.agents || {})[ev.agent] || ev.agent;
  const at = new Date(ev.at * 1000).toLocaleTimeString();
  const reason = ev.data.reason ? ` (${W.settings.reason_codes[ev.data.reason] || ev.data.reason})` : "";
  list.prepend(el("li", { dataset: { agent: ev.agent, state: ev.data.state } },
    `${at} ${ev.agent} ${name}: `, stateLabel(ev.data.from), " → ",
    el("span", { class: "state-badge small", dataset: { state: ev.data.state } }, stateLabel(ev.data.state)),
    reason));
  while (list.children.length > 12) list.lastChild.remove();
}

function onEvent(ev) {
  if (ev.type === "agent.state") noteChange(ev);
  soon();
}

// Many events arrive in bursts (one call makes several): refresh once per burst.
function soon() {
  if (W.pending) return;
  W.pending = setTimeout(() => { W.pending = null; refresh(); }, 150);
}

document.addEventListener("DOMContentLoaded", async () => {
  translate();
  setupLanguageSwitch(() => { renderQueues(); renderAgents(); });
  await loadMe();
  W.settings = await api("GET", "/console/api/settings");
  document.getElementById("whoami").textContent = session.me.name;
  document.getElementById("signout").onclick = signOut;
  const ext = document.getElementById("mon-ext");
  ext.value = localStorage.getItem(MONITOR_EXT) || "";
  ext.addEventListener("change", () => localStorage.setItem(MONITOR_EXT, ext.value.trim()));
  document.getElementById("monitor-form").addEventListener("submit", (ev) => ev.preventDefault());
  // The clocks tick every second; a full refresh every 10 s catches what events do not say.
  setInterval(tickAgents, 1000);
  setInterval(renderQueues, 1000);
  setInterval(refresh, 10000);
  new EventStream(onEvent, refresh);
});
