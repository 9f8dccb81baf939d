// The agent console: state, the screen pop while the phone rings, call
// controls and wrap-up, kept live by the event stream.
"use strict";

const S = {
  settings: null,
  agent: { state: "logged-out", reason: null, since: Date.now() },
  call: null,   // {contact_id, phase: ringing|connected, held, queue, caller, dialed, pop, waitBase, waitAt}
  wrap: null,   // {contact_id, queue, endsAt}
  pop: null,    // the screen pop on show (its history may follow in screen.history)
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
      : call.phase === "dialing" ? "call.dialing"
      : call.held ? "call.held" : "call.connected";
    $("call-caller").textContent = call.caller || "";
    $("call-queue").textContent = call.queue || "";
    $("call-dialed").textContent = call.dialed || "";
    $("btn-hold").hidden = !!call.held;
    $("btn-resume").hidden = !call.held;
  }
  status.textContent = t(status.dataset.i18n, { n: (call && call.dialed) || "" });
  const features = S.settings.features;
  const connected = !!call && call.phase === "connected";
  const consult = connected ? call.consult : null;
  const conference = connected ? call.conference : null;
  $("btn-consult").hidden = !features.consult;
  $("btn-conference").hidden = !features.conference;
  // A blind transfer to an agent or a number needs no optional feature.
  $("side-controls").hidden = !connected || !!consult || !!conference;
  $("consult-bar").hidden = !consult;
  if (consult) {
    $("consult-status").textContent = t(consult.connected ? "call.consult_talking" : "call.consulting", { t: consult.target });
    $("consult-bar").dataset.connected = String(!!consult.connected);
    $("btn-consult-complete").disabled = !consult.connected;
  }
  $("conference-bar").hidden = !conference;
  if (conference) {
    $("conference-status").textContent = t("call.conferencing", { t: conference.target });
    $("conference-bar").dataset.connected = String(!!conference.connected);
  }
  tick();
}

// The extra legs of a call (consult, conference) as the server sees them now.
async function refreshSides(cid) {
  try {
    const view = await api("GET", `/api/calls/${cid}`);
    if (!S.call || S.call.contact_id !== cid) return;
    S.call.consult = view.consult;
    S.call.conference = view.conference;
    S.call.held = view.on_hold || !!view.consult;  // the caller hears music during a consult
    renderCall();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) showError(err);
  }
}

function sideTarget() {
  const target = $("side-target").value.trim();
  // An extension has up to six digits (extensions.toml); anything longer goes out through the trunk.
  return /^\d{1,6}$/.test(target) ? { extension: target } : { number: target };
}

// A customer's phone number, with a button that calls it when click-to-call is on.
function phoneLine(p) {
  return el("div", { class: p.primary ? "primary-phone" : "" }, p.number, p.label ? ` (${p.label})` : "",
    S.settings.features.click_to_call
      ? el("button", { class: "dial-card", "data-number": p.number, "data-i18n": "call.from_card", onclick: () => actions.dial(p.number) }, t("call.from_card"))
      : null);
}

function text(value) { return value === null || value === undefined || value === "" ? "–" : value; }

function renderPop(pop) {
  const panel = $("pop");
  S.pop = pop;
  if (!pop) { panel.hidden = true; $("kb-for-call").hidden = true; return; }
  const c = pop.customer;
  $("pop-name").textContent = c ? c.name : `${t("pop.unknown")} ${pop.caller || ""}`;
  const tier = ((c && c.tier) || pop.tier || "").toString();
  $("pop-tier").textContent = tier;
  $("pop-tier").dataset.tier = tier.toLowerCase();
  $("pop-tier").hidden = !tier;
  $("pop-phones").replaceChildren(...(c ? c.phones : []).map(phoneLine));
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
  delete $("pop-history").dataset.followed;
  renderHistory(pop);
  panel.dataset.contact = pop.contact_id;
  suggestArticles(pop);
  loadPopFollowUps(pop);
  panel.dataset.shownAt = String(Date.now());  // when the agent could first read it
  panel.hidden = false;
}

// Previous contacts: in the pop, or following it (screen.history) when the pop
// went out before they were read ("history": "pending").
function renderHistory(pop) {
  const rows = (pop.recent_contacts || []).map((r) => el("tr", { dataset: { contact: r.contact_id } },
    el("td", {}, (r.arrived_at || "").replace("T", " ").slice(0, 16)), el("td", {}, text(r.queue)),
    el("td", {}, text(r.agent)), el("td", {}, text(r.outcome)),
    el("td", {}, text(r.disposition)), el("td", {}, text(r.notes))));
  const state = pop.history || "complete";
  const empty = state === "pending" ? "pop.pending" : state === "unavailable" ? "pop.unavailable" : "pop.nohistory";
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, "data-i18n": empty }, t(empty))));
  $("pop-history").replaceChildren(...rows);
  $("pop-history").dataset.history = state;
}

function renderWrap() {
  const form = $("wrapup");
  if (!S.wrap) { form.hidden = true; return; }
  const q = S.settings.queues[S.wrap.queue] || { dispositions: S.settings.dispositions || {} };
  const select = $("wrap-disposition");
  if (form.dataset.contact !== S.wrap.contact_id) {
    select.replaceChildren(el("option", { value: "", "data-i18n": "wrap.choose" }, t("wrap.choose")),
      ...Object.entries(q.dispositions).map(([code, label]) => el("option", { value: code }, label)));
    $("wrap-notes").value = "";
    $("wrap-saved").hidden = true;
    $("followup-saved").hidden = true;
    $("wrap-followup").value = "";
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
    case "screen.history": {
      const pop = S.pop;
      if (!mine || !pop || pop.contact_id !== ev.contact_id) return;
      pop.history = ev.data.history;
      pop.recent_contacts = ev.data.recent_contacts || [];
      renderHistory(pop);
      $("pop-history").dataset.followed = "true";  // the history came after the pop
      return;
    }
    case "call.consult_ringing":
    case "call.consult_answered":
    case "call.consult_failed":
    case "call.consult_ended":
    case "call.conference_ringing":
    case "call.conference_joined":
    case "call.conference_left":
    case "call.conference_failed":
      if (!current) return;
      refreshSides(ev.contact_id);
      return;
    case "call.transfer":
      // A completed consult transfer: the caller went on with the target, we wrap up.
      if (!current || ev.data.from_agent !== me()) return;
      startWrap(S.call.contact_id, S.call.queue);
      S.call = null;
      renderCall();
      return;
    // A click-to-call: the agent's phone rings first, then the number.
    case "call.originated":
    case "call.agent_rung":
    case "call.agent_alerting":
    case "call.agent_answered":
    case "call.customer_dialed":
    case "call.customer_alerting":
      if (!mine || (S.call && !current)) return;
      newCall(ev.contact_id, { phase: "dialing", caller: ev.data.caller, dialed: ev.data.dialed, queue: ev.queue });
      renderCall();
      return;
    case "call.connected":
      if (!mine || (S.call && !current)) return;
      newCall(ev.contact_id, { caller: ev.data.caller, dialed: ev.data.dialed, queue: ev.queue });
      S.call.phase = "connected";
      S.call.answeredAt = Date.now();
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

// -- follow-ups ---------------------------------------------------------------------------------

function followUpItem(f, mine) {
  const today = new Date().toISOString().slice(0, 10);
  return el("li", { class: f.due <= today ? "due" : "", dataset: { followUp: f.id, due: f.due } },
    el("b", {}, f.due), " ", f.customer_name || f.caller_number || "", " ",
    mine ? null : el("span", { class: "muted" }, `(${f.agent})`),
    f.note ? el("div", {}, f.note) : null,
    f.done_at ? el("span", { class: "ok", "data-i18n": "fu.done" }, t("fu.done"))
      : mine ? el("button", { "data-i18n": "fu.done", onclick: () => followUpDone(f.id) }, t("fu.done")) : null);
}

async function loadMyFollowUps() {
  try {
    const found = await api("GET", `/api/follow-ups?${new URLSearchParams({ agent: me(), open: "true" })}`);
    const items = found.follow_ups.map((f) => followUpItem(f, true));
    if (!items.length) items.push(el("li", { class: "none", "data-i18n": "fu.none" }, t("fu.none")));
    $("fu-mine").replaceChildren(...items);
  } catch (err) { showError(err); }
}

// The customer's follow-ups, beside their previous contacts in the pop.
async function loadPopFollowUps(pop) {
  const who = pop.customer ? { customer: pop.customer.id } : pop.caller ? { caller: pop.caller } : null;
  if (!who) { $("pop-followups").replaceChildren(); return; }
  try {
    const found = await api("GET", `/api/follow-ups?${new URLSearchParams(who)}`);
    if (S.pop !== pop) return;
    const items = found.follow_ups.map((f) => followUpItem(f, false));
    if (!items.length) items.push(el("li", { class: "none", "data-i18n": "fu.none" }, t("fu.none")));
    $("pop-followups").replaceChildren(...items);
  } catch (err) { showError(err); }
}

async function followUpDone(id) {
  await act(() => api("POST", `/api/follow-ups/${id}/done`));
  loadMyFollowUps();
  if (S.pop) loadPopFollowUps(S.pop);
}

// -- knowledge base ----------------------------------------------------------------------------

function articleItem(a) {
  return el("li", { class: "article", dataset: { article: a.id } },
    el("details", {}, el("summary", {}, a.title), el("p", {}, a.body)));
}

// What the IVR recognised for a call: its `intent` attribute, the flow nodes it
// went through and the phrases it heard (the pop's call-attached data).
function callIntents(pop) {
  const out = [];
  const intent = pop.attributes && pop.attributes.intent;
  if (intent) out.push(...(Array.isArray(intent) ? intent : String(intent).split(",")));
  for (const step of pop.ivr_path || []) {
    for (const key of ["node", "phrase", "heard", "text", "intent"]) {
      if (typeof step[key] === "string") out.push(step[key]);
    }
  }
  return [...new Set(out.map((x) => x.trim()).filter(Boolean))].slice(0, 20);
}

function callLanguage(pop) {
  return (pop.attributes && pop.attributes.language) || (pop.customer && pop.customer.language) || LANG;
}

async function suggestArticles(pop) {
  const box = $("kb-for-call");
  const intents = pop ? callIntents(pop) : [];
  if (!intents.length) { box.hidden = true; return; }
  const p = new URLSearchParams(intents.map((i) => ["intent", i]));
  p.set("lang", callLanguage(pop));
  try {
    const found = await api("GET", `/api/knowledge?${p}`);
    if (S.pop !== pop) return;  // another call since
    $("kb-suggested").replaceChildren(...found.articles.map(articleItem));
    $("kb-suggested").dataset.contact = pop.contact_id;
    box.hidden = !found.articles.length;
  } catch (err) { showError(err); }
}

async function searchArticles() {
  const q = $("kb-q").value.trim();
  if (!q) return;
  const p = new URLSearchParams({ q, lang: S.pop ? callLanguage(S.pop) : LANG });
  try {
    const found = await api("GET", `/api/knowledge?${p}`);
    const items = found.articles.map(articleItem);
    if (!items.length) items.push(el("li", { class: "none", "data-i18n": "kb.none" }, t("kb.none")));
    $("kb-results").replaceChildren(...items);
  } catch (err) { showError(err); }
}

// -- customer search ---------------------------------------------------------------------------

function customerCard(c) {
  return el("li", { class: "customer", dataset: { customer: c.id } },
    el("b", {}, c.name), " ", el("span", { class: "tier", dataset: { tier: (c.tier || "").toLowerCase() } }, c.tier),
    el("div", {}, c.phones.map(phoneLine)),
    el("div", {}, c.accounts.map((a) => `${a.number}${a.kind ? ` (${a.kind})` : ""}`).join(", ")),
    c.account_manager ? el("div", {}, el("span", { "data-i18n": "pop.manager" }, t("pop.manager")), `: ${c.account_manager}`) : null,
    c.notes ? el("div", { class: "muted" }, c.notes) : null,
    c.open_complaints.map((x) => el("div", { class: "complaint" }, `${x.opened_on} — ${x.summary} [${x.status}]`)));
}

async function searchCustomers() {
  const q = $("cs-q").value.trim();
  if (!q) return;
  try {
    const found = await api("GET", `/api/customers?${new URLSearchParams({ q, limit: "10" })}`);
    const items = found.customers.map(customerCard);
    if (!items.length) items.push(el("li", { class: "none", "data-i18n": "cs.none" }, t("cs.none")));
    $("cs-results").replaceChildren(...items);
  } catch (err) { showError(err); }
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
  blindTransfer: () => S.call && S.call.phase === "connected" && $("side-target").value.trim() &&
    act(() => {
      const target = sideTarget();
      // The transfer route names an agent by its extension.
      const body = target.extension ? { agent: target.extension } : target;
      return api("POST", `/api/calls/${S.call.contact_id}/transfer`, body);
    }),
  consult: () => S.call && $("side-target").value.trim() && act(async () => {
    const view = await api("POST", `/api/calls/${S.call.contact_id}/consult`, sideTarget());
    if (S.call) { S.call.consult = view.consult; S.call.held = view.on_hold || !!view.consult; renderCall(); }
  }),
  consultComplete: () => S.call && act(() => api("POST", `/api/calls/${S.call.contact_id}/consult/complete`)),
  consultCancel: () => S.call && act(async () => {
    const view = await api("POST", `/api/calls/${S.call.contact_id}/consult/cancel`);
    if (S.call) { S.call.consult = view.consult; S.call.held = view.on_hold || !!view.consult; renderCall(); }
  }),
  conference: () => S.call && $("side-target").value.trim() && act(async () => {
    const view = await api("POST", `/api/calls/${S.call.contact_id}/conference`, sideTarget());
    if (S.call) { S.call.conference = view.conference; renderCall(); }
  }),
  conferenceDrop: () => S.call && act(async () => {
    const view = await api("DELETE", `/api/calls/${S.call.contact_id}/conference`);
    if (S.call) { S.call.conference = view.conference; renderCall(); }
  }),
  dial: (number) => act(() => {
    const target = (typeof number === "string" ? number : $("dial-number").value).trim();
    if (!target) return undefined;
    $("dial-number").value = target;
    return api("POST", "/api/calls", { agent: me(), number: target }).then((view) => {
      if (S.call && S.call.contact_id !== view.contact_id) return;
      newCall(view.contact_id, { phase: S.call ? S.call.phase : "dialing", dialed: view.dialed, caller: view.caller, queue: view.queue });
      renderCall();
    });
  }),
  saveWrap: () => S.wrap && act(async () => {
    const disposition = $("wrap-disposition").value || undefined;
    const notes = $("wrap-notes").value.trim() || undefined;
    const due = $("wrap-followup").value;
    if (disposition || notes) {
      await api("PUT", `/api/contacts/${S.wrap.contact_id}/disposition`, { disposition, notes });
      $("wrap-saved").hidden = false;
    }
    if (due) {
      await api("POST", "/api/follow-ups", { contact_id: S.wrap.contact_id, due, note: notes });
      $("wrap-followup").value = "";
      $("followup-saved").hidden = false;
      loadMyFollowUps();
      if (S.pop) loadPopFollowUps(S.pop);
    }
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
  $("btn-blind").onclick = actions.blindTransfer;
  $("btn-consult").onclick = actions.consult;
  $("btn-conference").onclick = actions.conference;
  $("btn-consult-complete").onclick = actions.consultComplete;
  $("btn-consult-cancel").onclick = actions.consultCancel;
  $("btn-conference-drop").onclick = actions.conferenceDrop;
  $("btn-dial").onclick = actions.dial;
  $("wrapup").addEventListener("submit", (ev) => { ev.preventDefault(); actions.saveWrap(); });
  $("signout").onclick = signOut;
  $("cs-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchCustomers(); });
  $("kb-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchArticles(); });
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
  // Click-to-call only when the server has the route (its OpenAPI document lists it).
  $("dialer").hidden = !S.settings.features.click_to_call;
  fillSelects();
  bind();
  renderState();
  renderCall();
  setInterval(tick, 1000);
  loadMyFollowUps();
  new EventStream(onEvent, resync);
});
