// The agent console: state, the screen pop while the phone rings, call
// controls and wrap-up, kept live by the event stream.
"use strict";

const S = {
  settings: null,
  agent: { state: "logged-out", reason: null, since: Date.now() },
  call: null,   // {contact_id, phase: ringing|connected, held, queue, caller, dialed, pop, waitBase, waitAt}
  wrap: null,   // {contact_id, queue, endsAt}
};

const $ = (id) => document.getElementById(id);

function me() { return session.me.agent; }

// -- rendering ---------------------------------------------------------------------------

function renderState() {
  const badge = $("state");
  badge.dataset.state = S.agent.state;
  badge.textContent = stateLabel(S.agent.state);
  const reason = S.agent.reason;
  $("state-reason").textContent = reason ? (S.settings.reason_codes[reason] || reason) : "";
  $("btn-login").hidden = S.agent.state !== "logged-out";
  $("btn-logout").hidden = S.agent.state === "logged-out";
  $("btn-ready").disabled = !["not-ready", "wrap-up"].includes(S.agent.state);
  $("btn-notready").disabled = !["available", "not-ready", "wrap-up"].includes(S.agent.state);
  tick();
}

function renderCall() {
  const call = S.call;
  const status = $("call-status");
  $("call-facts").hidden = !call;
  $("call-controls").hidden = !call || call.phase !== "connected";
  if (!call) {
    status.dataset.phase = "idle";
    status.dataset.i18n = "call.none";
  } else {
    status.dataset.phase = call.held ? "held" : call.phase;
    status.dataset.i18n = call.phase === "ringing" ? "call.ringing"
      : call.held ? "call.held" : "call.connected";
    $("call-caller").textContent = call.caller || "";
    $("call-queue").textContent = call.queue || "";
    $("call-dialed").textContent = call.dialed || "";
    $("btn-hold").hidden = !!call.held;
    $("btn-resume").hidden = !call.held;
  }
  status.textContent = t(status.dataset.i18n);
  const features = S.settings.features;
  $("btn-consult").hidden = !features.consult;
  $("btn-conference").hidden = !features.conference;
  tick();
}

function text(value) { return value === null || value === undefined || value === "" ? "–" : value; }

function renderPop(pop) {
  const panel = $("pop");
  if (!pop) { panel.hidden = true; return; }
  const c = pop.customer;
  $("pop-name").textContent = c ? c.name : `${t("pop.unknown")} ${pop.caller || ""}`;
  const tier = ((c && c.tier) || pop.tier || "").toString();
  $("pop-tier").textContent = tier;
  $("pop-tier").dataset.tier = tier.toLowerCase();
  $("pop-tier").hidden = !tier;
  $("pop-phones").replaceChildren(...(c ? c.phones : []).map((p) =>
    el("div", { class: p.primary ? "primary-phone" : "" }, p.number, p.label ? ` (${p.label})` : "")));
  $("pop-accounts").replaceChildren(...(c ? c.accounts : []).map((a) =>
    el("div", {}, a.number, a.kind ? ` (${a.kind})` : "")));
  const account = pop.attributes && pop.attributes.account;
  if (account) $("pop-accounts").append(el("div", { class: "entered" }, `IVR: ${account}`));
  $("pop-manager").textContent = text(c && c.account_manager);
  $("pop-notes").textContent = text(c && c.notes);
  $("pop-complaints").replaceChildren(...(c ? c.open_complaints : []).map((x) =>
    el("div", { class: "complaint" }, `${x.opened_on} — ${x.summary} [${x.status}]`)));
  $("pop-ivr").replaceChildren(...(pop.ivr_path || []).map((step) => {
    const detail = Object.entries(step).filter(([k]) => !["step", "at"].includes(k))
      .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
    return el("li", {}, el("b", {}, step.step), " ", detail);
  }));
  const rows = (pop.recent_contacts || []).map((r) => el("tr", {},
    el("td", {}, (r.arrived_at || "").replace("T", " ").slice(0, 16)), el("td", {}, text(r.queue)),
    el("td", {}, text(r.agent)), el("td", {}, text(r.outcome)),
    el("td", {}, text(r.disposition)), el("td", {}, text(r.notes))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, "data-i18n": "pop.nohistory" }, t("pop.nohistory"))));
  $("pop-history").replaceChildren(...rows);
  panel.dataset.contact = pop.contact_id;
  panel.dataset.shownAt = String(Date.now());  // when the agent could first read it
  panel.hidden = false;
}

function renderWrap() {
  const form = $("wrapup");
  if (!S.wrap) { form.hidden = true; return; }
  const q = S.settings.queues[S.wrap.queue] || { dispositions: {} };
  const select = $("wrap-disposition");
  if (form.dataset.contact !== S.wrap.contact_id) {
    select.replaceChildren(el("option", { value: "" }, t("wrap.choose")),
      ...Object.entries(q.dispositions).map(([code, label]) => el("option", { value: code }, label)));
    $("wrap-notes").value = "";
    $("wrap-saved").hidden = true;
    form.dataset.contact = S.wrap.contact_id;
  }
  form.hidden = false;
  tick();
}

// Clocks: time in state, the caller's wait, the wrap-up countdown.
function tick() {
  const now = Date.now();
  $("state-time").textContent = duration((now - S.agent.since) / 1000);
  if (S.call && S.call.waitBase !== undefined) {
    const frozen = S.call.phase === "connected" ? S.call.answeredAt : now;
    $("call-wait").textContent = duration(S.call.waitBase + (frozen - S.call.waitAt) / 1000);
  }
  if (S.wrap) {
    const left = Math.ceil((S.wrap.endsAt - now) / 1000);
    $("wrap-countdown").textContent = left > 0 ? t("wrap.left", { s: left }) : t("wrap.over");
    $("wrap-countdown").classList.toggle("over", left <= 0);
  }
}

// -- what the server tells us --------------------------------------------------------------

function newCall(cid, fields) {
  if (!S.call || S.call.contact_id !== cid) {
    S.call = { contact_id: cid, phase: "ringing", held: false, pop: null, ...fields };
  } else {
    Object.assign(S.call, fields);
  }
}

function startWrap(cid, queue) {
  const wrapUp = ((S.settings.queues[queue] || {}).wrap_up) || 0;
  S.wrap = { contact_id: cid, queue, endsAt: Date.now() + wrapUp * 1000 };
  renderWrap();
}

function onEvent(ev) {
  const mine = ev.agent === me();
  const current = S.call && ev.contact_id === S.call.contact_id;
  switch (ev.type) {
    case "agent.state":
      if (!mine) return;
      S.agent = { state: ev.data.state, reason: ev.data.reason, since: Date.now() };
      renderState();
      return;
    case "call.offered":
      if (!mine) return;
      newCall(ev.contact_id, { queue: ev.queue, caller: ev.data.caller, dialed: ev.data.dialed, phase: "ringing" });
      renderPop(null);
      renderCall();
      return;
    case "screen.pop":
      if (!mine) return;
      newCall(ev.contact_id, {
        queue: ev.queue, caller: ev.data.caller, dialed: ev.data.dialed, pop: ev.data,
        waitBase: ev.data.wait_seconds || 0, waitAt: Date.now(),
      });
      renderPop(ev.data);
      renderCall();
      return;
    case "call.answered":
      if (!current || !mine) return;
      S.call.phase = "connected";
      S.call.answeredAt = Date.now();
      renderCall();
      return;
    case "call.hold":
    case "call.resume":
      if (!current) return;
      S.call.held = ev.type === "call.hold";
      renderCall();
      return;
    case "call.no_answer":
    case "call.declined":
      if (!current || !mine || S.call.phase !== "ringing") return;
      S.call = null;
      renderCall();
      return;
    case "call.transferred":
      if (!current || ev.data.from_agent !== me()) return;
      startWrap(S.call.contact_id, S.call.queue);
      S.call = null;
      renderCall();
      return;
    case "call.ended":
      if (!current) return;
      if (S.call.phase === "connected") startWrap(S.call.contact_id, S.call.queue);
      else renderPop(null);
      S.call = null;
      renderCall();
      return;
    default:
  }
}

// After (re)connecting: whatever happened while offline, from the REST API.
async function resync() {
  try {
    const agent = await api("GET", `/api/agents/${me()}`);
    S.agent = { state: agent.state, reason: agent.reason, since: Date.now() - agent.seconds_in_state * 1000 };
    renderState();
    const calls = await api("GET", "/api/calls");
    const live = calls.find((c) => c.agent === me() || c.ringing.includes(me()));
    if (!live) {
      if (S.call) { S.call = null; renderPop(null); }
    } else {
      newCall(live.contact_id, {
        queue: live.queue, caller: live.caller, dialed: live.dialed, held: live.on_hold,
        phase: live.agent === me() ? "connected" : "ringing",
      });
      if (!S.call.pop) {
        S.call.pop = { contact_id: live.contact_id, caller: live.caller, customer: live.customer,
          tier: live.tier, attributes: live.attributes, ivr_path: [], recent_contacts: [] };
        renderPop(S.call.pop);
      }
    }
    renderCall();
  } catch (err) {
    showError(err);
  }
}

// -- what the agent does ---------------------------------------------------------------------

async function act(fn) {
  try { await fn(); } catch (err) { showError(err); }
}

const actions = {
  ready: () => act(() => api("POST", `/api/agents/${me()}/ready`)),
  notReady: () => act(() => api("POST", `/api/agents/${me()}/not-ready`, { reason: $("reason").value })),
  login: () => act(() => api("POST", `/api/agents/${me()}/login`)),
  logout: () => act(() => api("POST", `/api/agents/${me()}/logout`, {})),
  holdToggle: () => S.call && S.call.phase === "connected" && act(() =>
    api("POST", `/api/calls/${S.call.contact_id}/${S.call.held ? "resume" : "hold"}`)),
  hangup: () => S.call && act(() => api("POST", `/api/calls/${S.call.contact_id}/hangup`)),
  transfer: () => S.call && S.call.phase === "connected" && act(() =>
    api("POST", `/api/calls/${S.call.contact_id}/transfer`, { queue: $("transfer-queue").value })),
  consult: () => S.call && act(() => {
    const target = $("dial-number").value.trim();
    return api("POST", `/api/calls/${S.call.contact_id}/consult`,
      /^\d{1,6}$/.test(target) ? { agent: target } : { number: target });
  }),
  conference: () => S.call && act(() => api("POST", `/api/calls/${S.call.contact_id}/conference`, {})),
  dial: () => act(() => api("POST", "/api/calls", { agent: me(), number: $("dial-number").value.trim() })),
  saveWrap: () => S.wrap && act(async () => {
    const disposition = $("wrap-disposition").value || undefined;
    const notes = $("wrap-notes").value.trim() || undefined;
    if (!disposition && !notes) return;
    await api("PUT", `/api/contacts/${S.wrap.contact_id}/disposition`, { disposition, notes });
    $("wrap-saved").hidden = false;
  }),
};

const SHORTCUTS = { r: "ready", n: "notReady", h: "holdToggle", x: "hangup", t: "transfer", w: "saveWrap" };

function bind() {
  $("btn-ready").onclick = actions.ready;
  $("btn-notready").onclick = actions.notReady;
  $("btn-login").onclick = actions.login;
  $("btn-logout").onclick = actions.logout;
  $("btn-hold").onclick = actions.holdToggle;
  $("btn-resume").onclick = actions.holdToggle;
  $("btn-hangup").onclick = actions.hangup;
  $("btn-transfer").onclick = actions.transfer;
  $("btn-consult").onclick = actions.consult;
  $("btn-conference").onclick = actions.conference;
  $("btn-dial").onclick = actions.dial;
  $("wrapup").addEventListener("submit", (ev) => { ev.preventDefault(); actions.saveWrap(); });
  $("signout").onclick = signOut;
  document.addEventListener("keydown", (ev) => {
    if (!ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const name = SHORTCUTS[ev.key.toLowerCase()];
    if (!name) return;
    ev.preventDefault();
    actions[name]();
  });
}

function fillSelects() {
  $("reason").replaceChildren(...Object.entries(S.settings.reason_codes).map(([code, label]) =>
    el("option", { value: code }, label)));
  $("transfer-queue").replaceChildren(...Object.keys(S.settings.queues).map((q) =>
    el("option", { value: q }, q)));
}

document.addEventListener("DOMContentLoaded", async () => {
  translate();
  setupLanguageSwitch(() => { renderState(); renderCall(); renderWrap(); });
  await loadMe();
  S.settings = await api("GET", "/console/api/settings");
  $("whoami").textContent = `${session.me.name} · ${me()}`;
  $("nav-wallboard").hidden = !session.me.supervises;
  $("dialer").hidden = !(S.settings.features.click_to_call || S.settings.features.consult);
  $("btn-dial").hidden = !S.settings.features.click_to_call;
  fillSelects();
  bind();
  renderState();
  renderCall();
  setInterval(tick, 1000);
  new EventStream(onEvent, resync);
});
