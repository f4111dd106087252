// The Praxis chat page: plain JavaScript over the edge's REST API and its Server-Sent
// Events (read with fetch, so that an API key can go in a header; EventSource cannot send
// one). Text from sessions is only ever set as textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem("praxis.key") || "";
let open = null; // the session on screen: {id, view, shown, bubble, abort}

function headers(extra = {}) {
  const h = { "content-type": "application/json", ...extra };
  if (apiKey) h.authorization = `Bearer ${apiKey}`;
  return h;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  if (r.status === 204) return null;
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

function say(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

function failed(e) {
  if (e instanceof ApiError && e.status === 401) {
    say("The edge asks for an API key: enter one above.", true);
  } else {
    say(e.message || String(e), true);
  }
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// -- agents and sessions ------------------------------------------------------------------

async function loadAgents() {
  const agents = await api("GET", "/agents");
  const select = $("agent");
  select.replaceChildren(...agents.map((a) => {
    const o = el("option", a.description ? `${a.name} — ${a.description}` : a.name);
    o.value = a.name;
    return o;
  }));
  if (!agents.length) say("No worker is running: no agents to talk to.", true);
}

async function loadSessions() {
  const body = { limit: 50 };
  const task = $("filter-task").value.trim();
  if (task) body.task_id = task;
  const page = await api("POST", "/agent-sessions/list", body);
  $("sessions").replaceChildren(...page.items.map((s) => {
    const b = el("button", `${s.agent_name} · ${s.state}`);
    b.type = "button";
    b.dataset.sessionId = s.session_id;
    b.append(el("small", s.session_id), el("small", `task ${s.task_id}`));
    if (open && open.id === s.session_id) b.setAttribute("aria-current", "true");
    b.addEventListener("click", () => { location.hash = s.session_id; });
    const li = el("li");
    li.append(b);
    return li;
  }));
}

async function startSession(event) {
  event.preventDefault();
  const body = { agent_name: $("agent").value };
  const task = $("task-id").value.trim();
  const first = $("first-message").value.trim();
  if (task) body.task_id = task;
  if (first) body.initial_message = first;
  try {
    const created = await api("POST", "/agent-sessions/create", body);
    $("task-id").value = "";
    $("first-message").value = "";
    location.hash = created.session_id;
    say(`Started ${created.session_id} for task ${created.task_id}.`);
  } catch (e) {
    failed(e);
  }
}

// -- one session ----------------------------------------------------------------------------

function showView(view) {
  open.view = view;
  $("chat-agent").textContent = view.agent_name;
  $("chat-state").textContent = view.state;
  $("chat-ids").textContent = `${view.session_id} · task ${view.task_id}`;
  $("suspend").hidden = view.state !== "ACTIVE" && view.state !== "CREATED";
  $("resume").hidden = view.state !== "SUSPENDED";
  const ended = ["COMPLETED", "FAILED", "EXPIRED"].includes(view.state);
  $("complete").hidden = ended;
  $("send").hidden = ended;
}

function addMessage(role, text, extra) {
  const li = el("li", text, role);
  if (extra) li.classList.add(extra);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function callText(call) {
  const args = typeof call.args === "string" ? call.args : JSON.stringify(call.args);
  return `${call.tool}(${args})`;
}

function showApprovals(calls) {
  for (const call of calls) {
    if (!call.needs_approval && call.needs_approval !== undefined) continue;
    if (document.querySelector(`.approval[data-call-id="${CSS.escape(call.call_id)}"]`)) continue;
    const row = el("div", undefined, "approval");
    row.dataset.callId = call.call_id;
    row.append(el("span", "The agent asks to run"), el("code", callText(call)));
    for (const [label, verb] of [["Approve", "approve"], ["Deny", "deny"]]) {
      const b = el("button", label, verb);
      b.type = "button";
      b.addEventListener("click", () => decide(call.call_id, verb));
      row.append(b);
    }
    $("approvals").append(row);
  }
}

async function decide(callId, verb) {
  try {
    await api("POST", `/agent-sessions/${open.id}/tool-calls/${encodeURIComponent(callId)}/${verb}`, {});
  } catch (e) {
    failed(e);
  }
}

function dropApproval(callId) {
  const row = document.querySelector(`.approval[data-call-id="${CSS.escape(callId)}"]`);
  if (row) row.remove();
}

// While the agent replies: a Stop button (cancels the turn in flight).
function replying(on) {
  $("stop").hidden = !on;
}

function handle(s, type, cursor, e) {
  if (s !== open) return;
  if (cursor !== null && cursor <= s.shown) return; // already on screen from the history
  switch (type) {
    case "user.message":
      addMessage("user", e.content);
      break;
    case "message.queued":
      addMessage("user", e.content, "queued");
      break;
    case "turn.started":
      if (!s.bubble) s.bubble = addMessage("agent", "", "streaming");
      replying(true);
      break;
    case "token.delta":
      if (!s.bubble) s.bubble = addMessage("agent", "", "streaming");
      s.bubble.textContent += e.text;
      s.bubble.scrollIntoView({ block: "end" });
      break;
    case "agent.message":
      if (!s.bubble) s.bubble = addMessage("agent", "");
      s.bubble.textContent = e.content;
      s.bubble.classList.remove("streaming");
      s.bubble = null;
      break;
    case "tool.calls": // the reply goes on in its own bubble; the steps show below it
      for (const call of e.calls) {
        addMessage("note", `tool: ${callText(call)}${call.needs_approval ? " (needs approval)" : ""}`, "tool");
      }
      break;
    case "tool.result": {
      const content = typeof e.content === "string" ? e.content : JSON.stringify(e.content);
      const short = content.length > 200 ? `${content.slice(0, 199)}…` : content;
      addMessage("note", `${e.denied ? "denied" : "result"}: ${short}`, "tool");
      break;
    }
    case "turn.waiting":
      replying(false);
      if (s.bubble && e.text) s.bubble.textContent = e.text;
      showApprovals(e.calls);
      say("The agent waits for your approval.");
      break;
    case "tool.decided":
      dropApproval(e.call_id);
      addMessage("note", `${e.tool}: ${e.approved ? "approved" : "denied"}${e.reason ? ` (${e.reason})` : ""}`);
      break;
    case "turn.failed":
      replying(false);
      if (s.bubble) s.bubble.classList.replace("streaming", "interrupted");
      s.bubble = null;
      addMessage("note", e.cancelled ? "Turn cancelled." : `Turn failed: ${e.reason}`);
      break;
    case "turn.completed":
      replying(false);
      if (s.bubble) s.bubble.classList.remove("streaming");
      s.bubble = null;
      break;
    case "session.state_changed":
      showView({ ...s.view, state: e.to_state });
      addMessage("note", `${e.from_state} → ${e.to_state}${e.reason ? `: ${e.reason}` : ""}`);
      loadSessions().catch(() => {});
      break;
    case "command.rejected":
    case "command.failed":
      say(e.reason, true);
      break;
    default:
      break;
  }
}

// One SSE message ("id:", "event:", "data:" lines) -> [id, data], or null for a comment.
function parseSse(block) {
  let id = null;
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    const at = line.indexOf(":");
    if (at === 0) continue;
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? [id, data.join("\n")] : null;
}

// Follow the session's events after `after`; on a broken stream, again after the last
// durable event seen (Last-Event-ID), so nothing is missed or shown twice.
async function follow(s, after) {
  let last = after;
  while (!s.abort.signal.aborted) {
    try {
      const h = headers({ accept: "text/event-stream" });
      h["last-event-id"] = String(last);
      const r = await fetch(`/agent-sessions/${s.id}/events`, { headers: h, signal: s.abort.signal });
      if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let m;
        while ((m = /\r?\n\r?\n/.exec(buf))) {
          const parsed = parseSse(buf.slice(0, m.index));
          buf = buf.slice(m.index + m[0].length);
          if (!parsed) continue;
          const envelope = JSON.parse(parsed[1]);
          if (envelope.cursor !== null) last = envelope.cursor;
          handle(s, envelope.type, envelope.cursor, envelope.data);
        }
      }
    } catch (e) {
      if (s.abort.signal.aborted) return;
      if (e instanceof ApiError && e.status < 500) { failed(e); return; }
    }
    await new Promise((done) => setTimeout(done, 1000)); // then follow again
  }
}

async function openSession(id) {
  if (open) open.abort.abort();
  const s = { id, view: null, shown: 0, bubble: null, abort: new AbortController() };
  open = s;
  $("messages").replaceChildren();
  $("approvals").replaceChildren();
  replying(false);
  try {
    const view = await api("GET", `/agent-sessions/${encodeURIComponent(id)}`);
    const history = await api("GET", `/agent-sessions/${encodeURIComponent(id)}/history?limit=200`);
    if (s !== open) return;
    $("chat").hidden = false;
    showView(view);
    for (const item of history.items) {
      addMessage(item.role, item.content, item.interrupted ? "interrupted" : undefined);
      s.shown = Math.max(s.shown, item.seq);
    }
    showApprovals(view.waiting_for);
    for (const b of document.querySelectorAll("#sessions button")) {
      b.setAttribute("aria-current", String(b.dataset.sessionId === id));
    }
    say("");
    follow(s, s.shown);
    $("message").focus();
  } catch (e) {
    $("chat").hidden = true;
    failed(e);
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("message").value;
  if (!open || !text.trim()) return;
  try {
    await api("POST", `/agent-sessions/${open.id}/messages`, { message: text });
    $("message").value = "";
  } catch (e) {
    failed(e);
  }
}

async function cancel() {
  try {
    await api("POST", `/agent-sessions/${open.id}/cancel`);
  } catch (e) {
    failed(e);
  }
}

async function transition(verb) {
  try {
    showView(await api("POST", `/agent-sessions/${open.id}/${verb}`, {}));
    await loadSessions();
  } catch (e) {
    failed(e);
  }
}

async function refresh() {
  try {
    await loadAgents();
    await loadSessions();
    if (location.hash.length > 1) await openSession(decodeURIComponent(location.hash.slice(1)));
  } catch (e) {
    failed(e);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = apiKey;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    apiKey = $("api-key").value.trim();
    sessionStorage.setItem("praxis.key", apiKey);
    say("");
    refresh();
  });
  $("new-session").addEventListener("submit", startSession);
  $("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadSessions().catch(failed);
  });
  $("send").addEventListener("submit", send);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("send").requestSubmit();
    }
  });
  $("stop").addEventListener("click", cancel);
  $("suspend").addEventListener("click", () => transition("suspend"));
  $("resume").addEventListener("click", () => transition("resume"));
  $("complete").addEventListener("click", () => transition("complete"));
  window.addEventListener("hashchange", () => {
    if (location.hash.length > 1) openSession(decodeURIComponent(location.hash.slice(1))).then(() => loadSessions());
  });
  refresh();
});
