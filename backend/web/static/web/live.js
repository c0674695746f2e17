// The web companion's live parts: one WebSocket to /ws/notifications/, authenticated
// by the page's session cookie (same origin, no token anywhere), resumed from the
// newest seq the page knows. It keeps the bell, the inbox list and read state current,
// shows who is online on a project page, and announces new notifications in the page
// (and through the browser's notifications once the user allows them) when the user's
// attention settings let them interrupt: the same rules as the desktop's
// (tray_app/attention.py, docs/protocol.md "Attention"). Text from the server goes in
// as text, never as HTML.
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
  let socket = null;

  const setStatus = (text) => { if (status) status.textContent = text; };
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

  const handlers = {
    hello(p) {
      attempt = 0;
      setCount(p.unread_count);
      if (p.attention) setAttention(p.attention);
      replaying = cursor < p.latest_seq;
      setStatus("Live");
      if (projectId !== null) send("subscribe_presence", { project_id: projectId }, "presence");
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
  };

  function send(type, payload, ref) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type, payload, ref }));
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}/ws/notifications/?after_seq=${cursor}`);
    socket.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      const handler = handlers[frame.type];
      if (handler) handler(frame.payload || {});
    };
    socket.onclose = (event) => {
      socket = null;
      if (event.code === 4001 || event.code === 4003) {
        // The login session ended: the page shows the login, unless the page is already
        // on its way elsewhere (its own logout form: a reload would abort that).
        if (!leaving) location.reload();
        return;
      }
      // Backoff with jitter, capped at 30 s; reset by the next hello.
      const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      setStatus(`Offline, reconnecting in ${Math.round(delay / 1000)} s`);
      setTimeout(connect, delay);
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
