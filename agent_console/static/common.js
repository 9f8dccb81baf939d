// Shared by the console's pages: labels in two languages, the API with the
// session's CSRF token, and the event stream that reconnects by itself.
"use strict";

const LABELS = {
  en: {
    "app.title": "ccserver console",
    "login.title": "Sign in", "login.user": "User name", "login.password": "Password",
    "login.submit": "Sign in", "login.failed": "Unknown user name or wrong password.",
    "login.locked": "Too many failed attempts. Try again in {s} s.",
    "nav.agent": "Agent console", "nav.wallboard": "Wallboard", "nav.reports": "Reports",
    "nav.signout": "Sign out", "nav.language": "Language",
    "conn.online": "Live", "conn.offline": "Offline: reconnecting…",
    "state.logged-out": "Logged out", "state.available": "Available", "state.reserved": "Ringing",
    "state.on-call": "On call", "state.wrap-up": "Wrap-up", "state.not-ready": "Not ready",
    "agent.state": "My state", "agent.since": "Time in state", "agent.ready": "Available",
    "agent.notready": "Not ready", "agent.login": "Log in", "agent.logout": "Log out",
    "agent.reason": "Reason",
    "call.title": "Call", "call.none": "No call. Waiting for the next customer.",
    "call.ringing": "Incoming call: the phone is ringing", "call.connected": "Connected",
    "call.held": "On hold", "call.ended": "Call ended",
    "call.caller": "Caller", "call.queue": "Queue", "call.wait": "Waited", "call.dialed": "Dialed",
    "call.hold": "Hold", "call.resume": "Resume", "call.hangup": "Hang up",
    "call.transfer": "Transfer", "call.blind": "Transfer now", "call.consult": "Consult", "call.conference": "Conference",
    "call.dial": "Call", "call.number": "Number",
    "pop.title": "Customer", "pop.unknown": "Unknown caller", "pop.phones": "Phones",
    "pop.accounts": "Accounts", "pop.notes": "Notes", "pop.complaints": "Open complaints",
    "pop.manager": "Account manager", "pop.ivr": "IVR path", "pop.history": "Previous contacts",
    "pop.nohistory": "No earlier contacts.", "pop.when": "When", "pop.outcome": "Outcome",
    "pop.disposition": "Disposition", "pop.agent": "Agent",
    "wrap.title": "Wrap-up", "wrap.disposition": "Disposition", "wrap.notes": "Notes",
    "wrap.save": "Save", "wrap.saved": "Saved", "wrap.left": "{s} s left",
    "wrap.over": "wrap-up time over", "wrap.choose": "— choose —",
    "keys.title": "Shortcuts",
    "wb.queues": "Queues", "wb.agents": "Agents", "wb.waiting": "Waiting",
    "wb.longest": "Longest wait", "wb.sl": "Service level", "wb.asa": "ASA", "wb.aht": "AHT",
    "wb.abandon": "Abandoned", "wb.answered": "Answered", "wb.agent": "Agent", "wb.name": "Name",
    "wb.state": "State", "wb.reason": "Reason", "wb.time": "Time", "wb.call": "Call",
    "wb.actions": "Actions", "wb.force": "Force", "wb.target": "target",
    "wb.changes": "Latest state changes",
    "rep.from": "From", "rep.to": "To (excluded)", "rep.interval": "Interval", "rep.15min": "15 minutes",
    "rep.hour": "Hour", "rep.day": "Day", "rep.total": "Whole range", "rep.tz": "Time zone",
    "rep.empty": "Show empty intervals", "rep.show": "Show", "rep.queues": "Queues", "rep.agents": "Agents",
    "rep.csv": "CSV", "rep.start": "Interval", "rep.offered": "Offered", "rep.abandoned": "Abandoned",
    "rep.occupancy": "Occupancy", "rep.utilization": "Utilization", "rep.survey": "Survey",
    "rep.offers": "Offers", "rep.missed": "Missed", "rep.talk": "Talk", "rep.loggedin": "Logged in",
    "rep.all": "All queues",
    "st.title": "Staffing (Erlang C)", "st.calls": "Calls per interval", "st.interval": "Interval (s)",
    "st.aht": "AHT (s)", "st.sl": "Service level target (%)", "st.threshold": "answered within (s)",
    "st.compute": "Compute", "st.required": "Agents required", "st.logged": "Logged in now",
    "st.working": "Working now", "st.shortfall": "Short", "st.agents": "Agents",
    "call.complete": "Complete transfer", "call.cancel": "Cancel consult", "call.drop": "Drop third party",
    "call.target": "Extension or number", "call.consulting": "Consulting {t}: the caller is on hold",
    "call.consult_talking": "Talking to {t}", "call.conferencing": "Conference with {t}",
    "call.from_card": "Call", "call.dialing": "Calling {n}…",
    "pop.pending": "Loading previous contacts…", "pop.unavailable": "Previous contacts could not be read in time.",
    "kb.title": "Knowledge base", "kb.suggested": "Suggested for this call", "kb.search": "Search articles",
    "kb.none": "No article found.", "kb.go": "Search",
    "cs.title": "Find a customer", "cs.placeholder": "Name, phone or account number", "cs.go": "Search",
    "cs.none": "No customer found.",
    "fu.date": "Follow-up on", "fu.note": "Follow-up note", "fu.mine": "My follow-ups", "fu.none": "No follow-ups.",
    "fu.done": "Done", "fu.customer": "Follow-ups", "fu.saved": "Follow-up saved",
    "mon.ext": "My phone extension", "mon.listen": "Listen", "mon.whisper": "Whisper", "mon.barge": "Barge",
    "mon.stop": "Stop", "mon.noext": "Set your phone extension first.", "wb.monitor": "Listen in",
    "err.generic": "The server refused: {m}",
  },
  zh: {
    "app.title": "ccserver 座席控制台",
    "login.title": "登录", "login.user": "用户名", "login.password": "密码",
    "login.submit": "登录", "login.failed": "用户名或密码错误。",
    "login.locked": "失败次数过多，请 {s} 秒后再试。",
    "nav.agent": "座席控制台", "nav.wallboard": "监控大屏", "nav.reports": "报表",
    "nav.signout": "退出", "nav.language": "语言",
    "conn.online": "在线", "conn.offline": "离线：正在重新连接…",
    "state.logged-out": "已登出", "state.available": "空闲", "state.reserved": "振铃中",
    "state.on-call": "通话中", "state.wrap-up": "话后处理", "state.not-ready": "未就绪",
    "agent.state": "我的状态", "agent.since": "状态时长", "agent.ready": "置闲",
    "agent.notready": "置忙", "agent.login": "签入", "agent.logout": "签出",
    "agent.reason": "原因",
    "call.title": "通话", "call.none": "暂无通话，等待下一位客户。",
    "call.ringing": "来电：话机正在振铃", "call.connected": "已接通",
    "call.held": "保持中", "call.ended": "通话结束",
    "call.caller": "主叫", "call.queue": "队列", "call.wait": "等待", "call.dialed": "被叫",
    "call.hold": "保持", "call.resume": "恢复", "call.hangup": "挂断",
    "call.transfer": "转接", "call.blind": "直接转接", "call.consult": "咨询", "call.conference": "会议",
    "call.dial": "呼叫", "call.number": "号码",
    "pop.title": "客户", "pop.unknown": "未知来电", "pop.phones": "电话",
    "pop.accounts": "账户", "pop.notes": "备注", "pop.complaints": "未结投诉",
    "pop.manager": "客户经理", "pop.ivr": "IVR 路径", "pop.history": "历史联络",
    "pop.nohistory": "没有历史联络。", "pop.when": "时间", "pop.outcome": "结果",
    "pop.disposition": "处理结果", "pop.agent": "座席",
    "wrap.title": "话后处理", "wrap.disposition": "处理结果", "wrap.notes": "备注",
    "wrap.save": "保存", "wrap.saved": "已保存", "wrap.left": "剩余 {s} 秒",
    "wrap.over": "话后时间已到", "wrap.choose": "— 请选择 —",
    "keys.title": "快捷键",
    "wb.queues": "队列", "wb.agents": "座席", "wb.waiting": "排队",
    "wb.longest": "最长等待", "wb.sl": "服务水平", "wb.asa": "平均应答", "wb.aht": "平均处理",
    "wb.abandon": "放弃率", "wb.answered": "已接听", "wb.agent": "座席", "wb.name": "姓名",
    "wb.state": "状态", "wb.reason": "原因", "wb.time": "时长", "wb.call": "通话",
    "wb.actions": "操作", "wb.force": "强制", "wb.target": "目标",
    "wb.changes": "最近状态变化",
    "rep.from": "开始", "rep.to": "结束（不含）", "rep.interval": "间隔", "rep.15min": "15 分钟",
    "rep.hour": "小时", "rep.day": "天", "rep.total": "整个区间", "rep.tz": "时区",
    "rep.empty": "显示空白时段", "rep.show": "查询", "rep.queues": "队列", "rep.agents": "座席",
    "rep.csv": "CSV", "rep.start": "时段", "rep.offered": "进线", "rep.abandoned": "放弃",
    "rep.occupancy": "占用率", "rep.utilization": "利用率", "rep.survey": "满意度",
    "rep.offers": "分配", "rep.missed": "未接", "rep.talk": "通话", "rep.loggedin": "签入时长",
    "rep.all": "全部队列",
    "st.title": "人力测算（Erlang C）", "st.calls": "每时段来电量", "st.interval": "时段（秒）",
    "st.aht": "平均处理时长（秒）", "st.sl": "服务水平目标（%）", "st.threshold": "应答时限（秒）",
    "st.compute": "计算", "st.required": "所需座席", "st.logged": "当前签入",
    "st.working": "当前在岗", "st.shortfall": "缺口", "st.agents": "座席数",
    "call.complete": "完成转接", "call.cancel": "取消咨询", "call.drop": "挂断第三方",
    "call.target": "分机或号码", "call.consulting": "正在咨询 {t}：客户保持中",
    "call.consult_talking": "正在与 {t} 通话", "call.conferencing": "与 {t} 会议中",
    "call.from_card": "呼叫", "call.dialing": "正在呼叫 {n}…",
    "pop.pending": "正在读取历史联络…", "pop.unavailable": "未能及时读取历史联络。",
    "kb.title": "知识库", "kb.suggested": "本次通话推荐", "kb.search": "搜索文章",
    "kb.none": "没有找到文章。", "kb.go": "搜索",
    "cs.title": "查找客户", "cs.placeholder": "姓名、电话或账号", "cs.go": "搜索",
    "cs.none": "没有找到客户。",
    "fu.date": "回访日期", "fu.note": "回访备注", "fu.mine": "我的回访", "fu.none": "没有回访任务。",
    "fu.done": "完成", "fu.customer": "回访任务", "fu.saved": "回访已保存",
    "mon.ext": "我的分机", "mon.listen": "监听", "mon.whisper": "耳语", "mon.barge": "强插",
    "mon.stop": "停止", "mon.noext": "请先设置您的分机号。", "wb.monitor": "监听",
    "err.generic": "服务器拒绝：{m}",
  },
};

function pickLanguage() {
  const saved = localStorage.getItem("ccserver.lang");
  if (saved && LABELS[saved]) return saved;
  const wanted = navigator.languages || [navigator.language || "en"];
  for (const tag of wanted) {
    if (tag.toLowerCase().startsWith("zh")) return "zh";
    if (tag.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

let LANG = pickLanguage();

function t(key, vars) {
  let text = (LABELS[LANG] && LABELS[LANG][key]) || LABELS.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) text = text.replace(`{${k}}`, String(v));
  return text;
}

// Fill every [data-i18n] element; pages call it again after a language switch.
function translate(root) {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  for (const el of (root || document).querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of (root || document).querySelectorAll("[data-i18n-title]")) {
    el.title = t(el.dataset.i18nTitle);
  }
  for (const el of (root || document).querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}

function setupLanguageSwitch(onChange) {
  const select = document.getElementById("lang");
  if (!select) return;
  select.value = LANG;
  select.addEventListener("change", () => {
    LANG = select.value;
    localStorage.setItem("ccserver.lang", LANG);
    translate();
    if (onChange) onChange();
  });
}

// -- the API -------------------------------------------------------------------------

const session = { me: null };

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (method !== "GET" && session.me) headers[session.me.csrf_header] = session.me.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (response.status === 401) {
    location.href = "/console/login?next=" + encodeURIComponent(location.pathname);
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function loadMe() {
  session.me = await api("GET", "/console/api/me");
  return session.me;
}

// An open page keeps its session alive ([console].session_idle counts from the
// last request; a page waiting for calls makes none for a long time).
setInterval(() => { if (session.me) loadMe().catch(() => {}); }, 5 * 60 * 1000);

async function signOut() {
  try { await api("POST", "/console/api/logout"); } finally {
    location.href = "/console/login";
  }
}

function showError(err) {
  const box = document.getElementById("error");
  if (!box) return;
  box.textContent = t("err.generic", { m: err.message || String(err) });
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

// -- the event stream ---------------------------------------------------------------

// One WebSocket to /api/events, opened with the session cookie. It reopens
// after any loss (1 s, doubling to 15 s) and tells the page when it is live
// again, so the page can fetch what it missed.
class EventStream {
  constructor(onEvent, onOnline) {
    this.onEvent = onEvent;
    this.onOnline = onOnline;
    this.delay = 1000;
    this.online = false;
    this.open();
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/events`);
    this.ws = ws;
    ws.onmessage = (msg) => {
      const event = JSON.parse(msg.data);
      if (event.type === "stream.ready") {
        this.delay = 1000;
        this.setOnline(true);
        if (this.onOnline) this.onOnline();
        return;
      }
      this.onEvent(event);
    };
    ws.onclose = (ev) => {
      this.setOnline(false);
      if (ev.code === 4401) {  // the session ended: sign in again
        location.href = "/console/login?next=" + encodeURIComponent(location.pathname);
        return;
      }
      setTimeout(() => this.open(), this.delay);
      this.delay = Math.min(this.delay * 2, 15000);
    };
  }

  setOnline(online) {
    this.online = online;
    const badge = document.getElementById("conn");
    if (!badge) return;
    badge.dataset.state = online ? "online" : "offline";
    badge.dataset.i18n = online ? "conn.online" : "conn.offline";
    badge.textContent = t(badge.dataset.i18n);
    document.body.classList.toggle("offline", !online);
  }
}

// -- formatting -------------------------------------------------------------------------

function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function stateLabel(state) { return t(`state.${state}`); }
