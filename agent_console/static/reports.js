// The reports page: queue and agent reports over a range, per interval, as
// tables and charts with CSV links; and the Erlang C staffing form.
"use strict";

const R = { settings: null, queues: null, agents: null, interval: "hour" };
const $ = (id) => document.getElementById(id);

function isoDate(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function params() {
  const p = new URLSearchParams({
    from: $("rep-from").value, to: $("rep-to").value,
    interval: $("rep-interval").value, tz: $("rep-tz").value.trim(),
  });
  return p;
}

// "2026-03-02T09:15:00+01:00" → "09:15" (with the date when the range has several days).
function slotLabel(start, interval, manyDays) {
  if (!start) return t("rep.total");
  if (interval === "day") return start.slice(0, 10);
  return manyDays ? `${start.slice(5, 10)} ${start.slice(11, 16)}` : start.slice(11, 16);
}

function num(v, digits = 0) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }

function renderQueues() {
  if (!R.queues) return;
  const only = $("rep-queue").value;
  const rows = R.queues.rows.filter((r) => !only || r.queue === only);
  const interval = R.queues.interval;
  const starts = [...new Set(rows.map((r) => r.interval_start))];
  const manyDays = new Set(starts.map((s) => (s || "").slice(0, 10))).size > 1;
  const showEmpty = $("rep-empty").checked;
  $("queue-rows").replaceChildren(...rows.filter((r) => showEmpty || r.offered > 0).map((r) =>
    el("tr", { dataset: { queue: r.queue, start: r.interval_start || "" } },
      el("td", {}, r.queue), el("td", {}, slotLabel(r.interval_start, interval, manyDays)),
      el("td", { dataset: { col: "offered" } }, r.offered), el("td", { dataset: { col: "answered" } }, r.answered),
      el("td", { dataset: { col: "abandoned" } }, r.abandoned), el("td", {}, percent(r.service_level)),
      el("td", {}, duration(r.asa)), el("td", {}, duration(r.aht)), el("td", {}, percent(r.occupancy)),
      el("td", {}, r.surveys ? `${num(r.survey_score, 1)} (${r.surveys})` : "–"))));
  // One category per interval (queues summed), or per queue for the whole range.
  const keys = interval === "total" ? rows.map((r) => r.queue) : starts;
  const pick = (k) => rows.filter((r) => (interval === "total" ? r.queue : r.interval_start) === k);
  const sum = (k, f) => pick(k).reduce((a, r) => a + (r[f] || 0), 0);
  const labels = keys.map((k) => (interval === "total" ? k : slotLabel(k, interval, manyDays)));
  barChart($("queue-chart"), labels, [
    { name: t("rep.offered"), cls: "s-offered", values: keys.map((k) => sum(k, "offered")) },
    { name: t("wb.answered"), cls: "s-answered", values: keys.map((k) => sum(k, "answered")) },
    { name: t("rep.abandoned"), cls: "s-abandoned", values: keys.map((k) => sum(k, "abandoned")) },
  ], {
    name: t("wb.sl"), cls: "s-sl",
    values: keys.map((k) => { const o = sum(k, "offered"); return o ? sum(k, "answered_in_threshold") / o : null; }),
  }, $("queue-legend"));
}

function renderAgents() {
  if (!R.agents) return;
  const rows = R.agents.rows;
  const interval = R.agents.interval;
  const manyDays = new Set(rows.map((r) => (r.interval_start || "").slice(0, 10))).size > 1;
  const showEmpty = $("rep-empty").checked;
  const busy = (r) => r.offers > 0 || (r.logged_in_seconds || 0) > 0;
  const names = R.settings.agents || {};
  $("agent-rows").replaceChildren(...rows.filter((r) => showEmpty || busy(r)).map((r) =>
    el("tr", { dataset: { agent: r.agent, start: r.interval_start || "" } },
      el("td", {}, `${r.agent} ${names[r.agent] || ""}`), el("td", {}, slotLabel(r.interval_start, interval, manyDays)),
      el("td", { dataset: { col: "offers" } }, r.offers), el("td", { dataset: { col: "answered" } }, r.answered),
      el("td", {}, r.missed), el("td", {}, duration(r.talk_seconds)), el("td", {}, duration(r.aht)),
      el("td", {}, duration(r.logged_in_seconds)), el("td", {}, percent(r.occupancy)),
      el("td", {}, percent(r.utilization)))));
  // Per agent over the whole range: who answered, who missed.
  const agents = [...new Set(rows.filter(busy).map((r) => r.agent))];
  const total = (a, f) => rows.filter((r) => r.agent === a).reduce((s, r) => s + (r[f] || 0), 0);
  barChart($("agent-chart"), agents.map((a) => `${a} ${names[a] || ""}`), [
    { name: t("wb.answered"), cls: "s-answered", values: agents.map((a) => total(a, "answered")) },
    { name: t("rep.missed"), cls: "s-abandoned", values: agents.map((a) => total(a, "missed")) },
  ], null, $("agent-legend"));
}

async function load() {
  const p = params();
  const q = $("rep-queue").value;
  const qp = new URLSearchParams(p);
  if (q) qp.set("queue", q);
  try {
    const [queues, agents] = await Promise.all([
      api("GET", `/api/reports/queues?${qp}`), api("GET", `/api/reports/agents?${p}`)]);
    R.queues = queues;
    R.agents = agents;
    $("csv-queues").href = `/api/reports/queues?${qp}&format=csv`;
    $("csv-agents").href = `/api/reports/agents?${p}&format=csv`;
    renderQueues();
    renderAgents();
    document.body.dataset.loaded = String(Date.now());
  } catch (err) { showError(err); }
}

async function staffing() {
  const p = new URLSearchParams({
    queue: $("st-queue").value, calls: $("st-calls").value, interval: $("st-interval").value,
    aht: $("st-aht").value, sl: String(Number($("st-sl").value) / 100), threshold: $("st-threshold").value,
  });
  try {
    const s = await api("GET", `/api/staffing?${p}`);
    $("st-required").textContent = s.required.agents;
    $("st-logged").textContent = s.logged_in;
    $("st-working").textContent = s.working;
    $("st-shortfall").textContent = s.shortfall;
    $("st-shortfall").parentElement.className = `figure ${s.shortfall > 0 ? "alert" : "ok"}`;
    $("st-sl-out").textContent = percent(s.required.service_level);
    $("st-asa").textContent = duration(s.required.asa);
    $("st-occ").textContent = percent(s.required.occupancy);
    $("st-rows").replaceChildren(...s.table.map((row) =>
      el("tr", { class: row.agents === s.required.agents ? "chosen" : "" },
        el("td", {}, row.agents), el("td", {}, percent(row.service_level)),
        el("td", {}, duration(row.asa)), el("td", {}, percent(row.occupancy)))));
    $("st-result").hidden = false;
    $("st-table").hidden = false;
  } catch (err) { showError(err); }
}

document.addEventListener("DOMContentLoaded", async () => {
  translate();
  setupLanguageSwitch(() => { renderQueues(); renderAgents(); });
  await loadMe();
  R.settings = await api("GET", "/console/api/settings");
  $("whoami").textContent = session.me.name;
  $("signout").onclick = signOut;
  const today = new Date();
  $("rep-from").value = isoDate(today);
  $("rep-to").value = isoDate(new Date(today.getTime() + 86400000));
  $("rep-tz").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = (Intl.supportedValuesOf && Intl.supportedValuesOf("timeZone")) || [];
  $("rep-zones").replaceChildren(...zones.map((z) => el("option", { value: z })));
  const queues = Object.keys(R.settings.queues);
  $("rep-queue").replaceChildren(el("option", { value: "", "data-i18n": "rep.all" }, t("rep.all")),
    ...queues.map((q) => el("option", { value: q }, q)));
  $("st-queue").replaceChildren(...queues.map((q) => el("option", { value: q }, q)));
  const first = R.settings.queues[queues[0]];
  if (first) {
    $("st-sl").value = String(Math.round(first.service_level_target * 1000) / 10);
    $("st-threshold").value = String(first.service_level_seconds);
  }
  $("st-queue").addEventListener("change", () => {
    const q = R.settings.queues[$("st-queue").value];
    $("st-sl").value = String(Math.round(q.service_level_target * 1000) / 10);
    $("st-threshold").value = String(q.service_level_seconds);
  });
  $("report-form").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  $("staff-form").addEventListener("submit", (ev) => { ev.preventDefault(); staffing(); });
  $("rep-empty").addEventListener("change", () => { renderQueues(); renderAgents(); });
  $("rep-queue").addEventListener("change", load);
  load();
});
