// The web companion's live parts: one WebSocket to /ws/notifications/, authenticated
// by the page's session cookie (same origin, no token anywhere), resumed from the
// newest seq the page knows. It keeps the bell, the inbox list and read state current,
// shows who is online on a project page, and announces new notifications in the page
// (and through the browser's notifications once the user allows them) when the user's
// attention settings let them interrupt: the same rules as the desktop's
// (tray_app/attention.py, docs/protocol.md "Attention"). Text from the server goes in
// as text, never as HTML.
//
// Where the network breaks WebSockets (a proxy without the Upgrade headers), the page
// takes the same frames from the HTTP stream, GET /api/stream/ (Server-Sent Events,
// docs/protocol.md "HTTP fallback"): after three sockets in a row closed before their
// hello, an EventSource on the same cookie, fed to the same handlers. The tab keeps the
// choice for its next pages (sessionStorage) and probes the socket every five minutes;
// a probe that says hello becomes the page's socket and the stream is closed.
"use strict";

(() => {
  const body = document.body;
  if (body.dataset.live !== "1") return;

  const count = document.getElementById("unread-count");
  const bell = count ? count.closest("a") : null;
  const status = document.getElementById("live-status");
  const announcer = document.getElementById("announcer");
  const inbox = body.dataset.page === "inbox" && body.dataset.firstPage === "1"
    ? document.getElementById("inbox") : null;
  const rowTemplate = document.getElementById("row-template");
  const projectId = body.dataset.projectId ? Number(body.dataset.projectId) : null;
  let cursor = Number(body.dataset.latestSeq || "0");
  let unread = count ? Number(count.textContent) : 0;
  let replaying = false;
  let attempt = 0;

  const setStatus = (text, title = "") => {
    if (!status) return;
    status.textContent = text;
    if (title) status.title = title; else status.removeAttribute("title");
  };
  let leaving = false;
  addEventListener("beforeunload", () => { leaving = true; });  // fires as a navigation starts
  document.addEventListener("submit", () => { leaving = true; }, true);

  // --- attention: when a notification may interrupt --------------------------------
  const RANK = { low: 0, normal: 1, high: 2, urgent: 3 };
  let attention = null;

  function minutesOf(clock) {
    const [hours, minutes] = clock.split(":").map(Number);
    return hours * 60 + minutes;
  }

  function wallMinutes(zone) {
    // Minutes since midnight on the zone's clock; the browser's own without a zone
    // (or with one this browser does not know).
    let options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (zone) options = { ...options, timeZone: zone };
    let parts;
    try {
      parts = new Intl.DateTimeFormat("en-GB", options).formatToParts(new Date());
    } catch {
      return wallMinutes(null);
    }
    const part = (type) => Number(parts.find((p) => p.type === type).value);
    return part("hour") * 60 + part("minute");
  }

  function dndActive(a) {
    return Boolean(a && a.dnd && (a.dnd.until === null || new Date(a.dnd.until) > new Date()));
  }

  function quietNow(a) {
    if (!a || !a.quiet_hours) return false;
    const now = wallMinutes(a.time_zone);
    const start = minutesOf(a.quiet_hours.start);
    const end = minutesOf(a.quiet_hours.end);
    return start <= end ? start <= now && now < end : now >= start || now < end;
  }

  function mayInterrupt(n) {
    const a = attention;
    if (!a) return true;
    const projectId = n.project ? n.project.id : null;
    if ((projectId !== null && a.muted_projects.includes(projectId))
        || a.muted_event_types.includes(n.event_type)) return false;
    if (n.priority === "urgent" && a.urgent_breaks_through) return true;
    if (dndActive(a) || quietNow(a)) return false;
    return (RANK[n.priority] ?? 1) >= (RANK[a.min_priority] ?? 0);
  }

  function setAttention(a) {
    if (!a || (attention && a.version < attention.version)) return;
    attention = a;
    const state = document.getElementById("dnd-state");
    const toggle = document.getElementById("dnd-toggle");
    if (!state || !toggle) return;
    const on = dndActive(a);
    state.hidden = !on;
    if (on) {
      const until = a.dnd.until ? new Date(a.dnd.until) : null;
      const when = until
        ? ` until ${until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}` : "";
      state.textContent = `Do not disturb${when}`;
    }
    toggle.value = on ? "off" : "on";
    toggle.textContent = on ? "Turn off" : "Do not disturb";
    toggle.setAttribute("aria-label", on ? "Turn off do not disturb" : "Turn on do not disturb");
  }

  try {
    setAttention(JSON.parse(document.getElementById("attention").textContent));
  } catch {
    attention = null;  // no settings on the page: everything may interrupt
  }

  function setCount(value) {
    unread = Math.max(0, value);
    if (count) count.textContent = String(unread);
    if (bell) bell.setAttribute("aria-label", `Inbox, ${unread} unread`);
    document.title = document.title.replace(/^\(\d+\) /, "");
    if (unread > 0) document.title = `(${unread}) ${document.title}`;
  }

  function rowOf(id) {
    return document.querySelector(`li[data-id="${Number(id)}"]`);
  }

  function markRow(row, read) {
    if (!row) return;
    row.classList.toggle("read", read);
    row.classList.toggle("unread", !read);
    const dot = row.querySelector(".dot");
    if (read && dot) dot.remove();
    if (!read && !dot) {
      const span = document.createElement("span");
      span.className = "dot";
      span.setAttribute("aria-hidden", "true");
      row.querySelector("a").prepend(span);
    }
    const button = row.querySelector('button[value="read"], button[value="unread"]');
    if (button) {
      const title = row.querySelector("a").textContent.trim();
      button.value = read ? "unread" : "read";
      button.textContent = read ? "Mark unread" : "Mark read";
      button.setAttribute("aria-label", `Mark “${title}” ${read ? "unread" : "read"}`);
    }
  }

  function addRow(n) {
    if (!inbox || !rowTemplate || rowOf(n.id)) return;
    const row = rowTemplate.content.firstElementChild.cloneNode(true);
    row.dataset.id = String(n.id);
    row.dataset.seq = String(n.seq);
    row.classList.add(`priority-${n.priority}`);
    const link = row.querySelector("a");
    link.href = `/notifications/${Number(n.id)}`;
    link.append(document.createTextNode(n.title));
    const meta = [];
    if (n.priority !== "normal") meta.push(n.priority[0].toUpperCase() + n.priority.slice(1));
    if (n.project) meta.push(n.project.title);
    meta.push(new Date(n.created_at).toLocaleString());
    row.querySelector(".meta").textContent = meta.join(" · ");
    for (const input of row.querySelectorAll('input[name="id"]')) input.value = String(n.id);
    markRow(row, n.is_read);
    inbox.prepend(row);
    const empty = document.getElementById("inbox-empty");
    if (empty) empty.remove();
  }

  // A browser notification when the user allowed them and is not looking at this page
  // (another tab or window has the focus); the in-page toast otherwise.
  function announce(n) {
    if (!mayInterrupt(n)) return;  // still in the list and on the bell
    const away = document.hidden || !document.hasFocus();
    if (away && "Notification" in window && Notification.permission === "granted") {
      const shown = new Notification(n.title, { body: n.message, tag: `tray-${n.id}` });
      shown.onclick = () => { window.focus(); location.href = `/notifications/${Number(n.id)}`; };
      return;
    }
    if (!announcer) return;
    const toast = document.createElement("div");
    toast.className = "toast";
    const link = document.createElement("a");
    link.href = `/notifications/${Number(n.id)}`;
    link.textContent = n.title;
    toast.append(link);
    announcer.append(toast);
    setTimeout(() => toast.remove(), 8000);
  }

  function presence(payload) {
    const list = document.getElementById("presence");
    if (!list || payload.project_id !== projectId) return;
    for (const member of payload.members || [payload]) {
      const id = member.user ? member.user.id : member.user_id;
      const item = list.querySelector(`li[data-user="${Number(id)}"]`);
      if (!item) continue;
      const state = member.online ? member.status : "offline";
      item.dataset.status = state;
      item.querySelector(".state").textContent =
        { online: "online", away: "away", dnd: "do not disturb", offline: "offline" }[state] || state;
    }
  }

  // Every frame, from the socket or the stream, goes through these; ``from`` is the
  // transport it came on.
  const handlers = {
    hello(p, from) {
      attempt = 0;
      failures = 0;
      greeted = from;
      setCount(p.unread_count);
      if (p.attention) setAttention(p.attention);
      replaying = cursor < p.latest_seq;
      if (from === socket) {
        remember(null);
        setStatus("Live");
        send("subscribe_presence", { project_id: projectId }, "presence");
      } else {  // the stream: presence comes with its ?watch=
        if (probeSoon) probeAt = 0;
        probeSoon = false;
        remember(probeAt || Date.now());
        setStatus("Live (HTTP fallback)", FALLBACK_TITLE);
        scheduleProbe();
      }
    },
    notification_created(p) {
      if (p.seq <= cursor) return;  // already shown
      cursor = p.seq;
      addRow(p);
      if (!replaying) announce(p);  // the bell follows the server's unread_count frames
    },
    caught_up(p) { replaying = false; cursor = Math.max(cursor, p.through_seq); },
    unread_count(p) { setCount(p.unread_count); },
    attention_changed(p) { setAttention(p); },
    notification_updated(p) {
      if (p.updates && "is_read" in p.updates) markRow(rowOf(p.id), p.updates.is_read);
    },
    notification_deleted(p) { const row = rowOf(p.id); if (row) row.remove(); },
    all_read(p) {
      for (const row of document.querySelectorAll("li[data-seq]")) {
        if (Number(row.dataset.seq) <= p.up_to_seq) markRow(row, true);
      }
    },
    resync_required() { location.reload(); },
    presence_snapshot: presence,
    presence_changed: presence,
    closed(p, from) {  // the stream's last event: where the socket would close with p.code
      if (from !== source) return;
      source.close();  // or the EventSource reconnects by itself
      source = null;
      ended(p.code);
    },
  };

  // --- transports: the socket, or the stream where WebSockets are blocked ------------
  const FAILURES_BEFORE_SWITCH = 3;  // sockets in a row that closed before their hello
  const PROBE_MS = 5 * 60 * 1000;  // on the stream, how often to try the socket again
  const FALLBACK_TITLE = "WebSockets are blocked on this network: updates come over "
    + "an HTTP stream instead.";
  const REMEMBER = "tray-live-stream-probe-at";  // sessionStorage: this tab is on the stream
  let socket = null;  // the page's socket, when it is on the socket
  let source = null;  // the page's EventSource, when it is on the stream
  let probe = null;  // a socket tried while on the stream
  let greeted = null;  // the transport whose hello came last
  let failures = 0;
  let retry = null;  // the timer of the next connect()
  let probeTimer = null;
  let probeAt = 0;  // when the socket is tried next, on the stream (0: now)
  // Try the socket right after the stream's next hello: the failures that led to the
  // stream may have been the server's (away, restarting), not the network's.
  let probeSoon = false;
  let onStream = false;

  function remember(at) {
    try {
      if (at) sessionStorage.setItem(REMEMBER, String(at)); else sessionStorage.removeItem(REMEMBER);
    } catch {
      // no storage: every page of the tab finds out for itself
    }
  }

  try {
    probeAt = Number(sessionStorage.getItem(REMEMBER)) || 0;
    onStream = probeAt > 0;
  } catch {
    onStream = false;
  }

  function receive(data, from) {
    if (from !== socket && from !== source) return;  // one the page has left
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    const handler = handlers[frame.type];
    if (handler) handler(frame.payload || {}, from);
  }

  function send(type, payload, ref) {
    if (type === "subscribe_presence" && projectId === null) return;
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type, payload, ref }));
    }
  }

  function openSocket() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return new WebSocket(`${scheme}//${location.host}/ws/notifications/?after_seq=${cursor}`);
  }

  function useSocket(s) {
    socket = s;
    s.onmessage = (event) => receive(event.data, s);
    s.onclose = (event) => {
      if (socket !== s) return;
      socket = null;
      if (greeted !== s) failures += 1;
      ended(event.code);
    };
  }

  function openStream() {
    const watch = projectId !== null ? `&watch=${projectId}` : "";
    const es = new EventSource(`/api/stream/?after_seq=${cursor}${watch}`);
    source = es;
    es.onmessage = (event) => receive(event.data, es);
    // A body that ended without `closed` (the network, a proxy), or a refusal. The page
    // reopens it itself, from its cursor and after its backoff, rather than let the
    // EventSource retry every 3 s from the last event id (which it stops doing after a
    // refusal).
    es.onerror = async () => {
      if (source !== es) return;
      es.close();
      source = null;
      if (greeted === es) {
        ended(null);
        return;
      }
      probeSoon = true;
      if (probeTimer === null && probe === null) scheduleProbe();
      ended(await refusal());
    };
  }

  // An EventSource does not say why it was refused: ask once. A 401 or a disabled
  // account means what the socket's 4001 or 4003 would.
  async function refusal() {
    const aborter = new AbortController();
    try {
      const response = await fetch(`/api/stream/?after_seq=${cursor}`, { signal: aborter.signal });
      if (response.status === 401) return 4001;
      if (response.status === 403 && (await response.json()).error.code === "account_disabled") {
        return 4003;
      }
    } catch {
      // the network or the server: retried
    } finally {
      aborter.abort();
    }
    return null;
  }

  function connect() {
    retry = null;
    if (onStream) openStream(); else useSocket(openSocket());
  }

  function ended(code) {
    if (code === 4001 || code === 4003) {
      // The login session ended: the page shows the login, unless the page is already
      // on its way elsewhere (its own logout form: a reload would abort that).
      if (!leaving) location.reload();
      return;
    }
    if (!onStream && failures >= FAILURES_BEFORE_SWITCH) {
      // The socket does not open: the stream, at once. The stream never goes back on
      // its failures (both fail while the server is away): only a probe that says hello.
      failures = 0;
      onStream = true;
      probeSoon = true;
      setStatus("Connecting…");
      connect();
      return;
    }
    // Backoff with jitter, capped at 30 s; reset by the next hello.
    const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    setStatus(`Offline, reconnecting in ${Math.round(delay / 1000)} s`);
    retry = setTimeout(connect, delay);
  }

  function scheduleProbe() {
    clearTimeout(probeTimer);
    probeTimer = setTimeout(probeSocket, Math.max(0, probeAt - Date.now()));
  }

  // On the stream: a socket that says hello replaces it. Its replay from the cursor
  // covers what came in between; what both carried is dropped by seq.
  function probeSocket() {
    probeTimer = null;
    if (!onStream || probe) return;
    const s = openSocket();
    probe = s;
    s.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (probe !== s || frame.type !== "hello") return;
      probe = null;
      onStream = false;
      if (source) source.close();
      source = null;
      clearTimeout(retry);
      retry = null;
      useSocket(s);
      receive(event.data, s);
    };
    s.onclose = (event) => {
      if (probe !== s) return;
      probe = null;
      if (event.code === 4001 || event.code === 4003) {
        ended(event.code);
        return;
      }
      probeAt = Date.now() + PROBE_MS;
      if (greeted === source && source) remember(probeAt);
      scheduleProbe();
    };
  }

  const allow = document.getElementById("allow-notifications");
  if (allow && "Notification" in window && Notification.permission === "default") {
    allow.hidden = false;
    allow.addEventListener("click", async () => {
      await Notification.requestPermission();
      allow.hidden = true;
    });
  }
  connect();
})();
