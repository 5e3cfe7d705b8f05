// The chat page: JWT login, rooms, presence, typing, acks, an offline queue, images.
//
// Every message goes through one outbox. A pump sends its head while connected and waits for
// the server's ack ({ok, id, ts} or {error}); a message written while disconnected waits in
// the outbox and is sent once the connection is back and the room re-joined. A retry after a
// lost ack carries the same client id (cid), so the server answers it without showing it
// twice. User text is only ever put in the page with textContent.

const TOKEN_KEY = "pyserver-chat-token";
const ACK_TIMEOUT = 8000;
const RATE_LIMIT_PAUSE = 3000;
const OUTBOX_LIMIT = 50;
const TYPING_EVERY = 1500; // ms between "typing" events while typing
const TYPING_IDLE = 2500; // ms without a key before "stopped typing"
const TYPING_SHOWN = 4000; // ms an indicator stays without news (volatile events may be lost)
// Larger files are refused here because they would exceed the server's message size
// (max_http_buffer_size, 1 MB); the server judges everything below (its limit is 512 KiB).
const TRANSPORT_CEILING = 900_000;

const params = new URLSearchParams(location.search);
const polling = params.get("transport") === "polling";
const $ = (id) => document.getElementById(id);

const ui = {
  status: $("status"), me: $("me"), signOut: $("sign-out"), notice: $("notice"),
  login: $("login"), loginForm: $("login-form"), loginName: $("login-name"),
  loginButton: $("login-button"), loginError: $("login-error"),
  app: $("app"), rooms: $("rooms"), joinForm: $("join-form"), joinInput: $("join-input"),
  presence: $("presence"), onlineCount: $("online-count"), roomTitle: $("room-title"),
  queueInfo: $("queue-info"), messages: $("messages"), typing: $("typing"),
  composer: $("composer"), text: $("text"), imageInput: $("image-input"),
};

let socket = null;
let me = null;
let room = normalRoom(params.get("room") || "") || "general";
let joined = false; // the current room is joined on the current connection
let limits = { text: 2000, image: 512 * 1024 };
const knownRooms = new Set(["general", "random", room]);
const outbox = []; // {cid, room, kind, text | data+url, el}
let pumping = false;
const shown = new Map(); // server message id -> element
const blobUrls = new Set();
const typers = new Map(); // user -> timer
let typingSentAt = 0;
let typingStop = null;

// -- helpers -----------------------------------------------------------------------------

function normalRoom(name) {
  const value = name.trim().replace(/^#/, "").toLowerCase();
  return /^[a-z0-9][a-z0-9_-]{0,31}$/.test(value) ? value : null;
}

function newCid() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function tokenUser(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part)).sub || null;
  } catch {
    return null;
  }
}

function node(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- connection status -------------------------------------------------------------------

const STATUS_TEXT = {
  "signed-out": "signed out", connecting: "connecting…", connected: "connected",
  reconnecting: "reconnecting…", offline: "disconnected", refused: "refused",
};

function setStatus(status) {
  ui.status.dataset.status = status;
  document.body.dataset.status = status;
  ui.status.textContent = STATUS_TEXT[status] + (polling && status === "connected" ? " (polling)" : "");
  updateQueueInfo();
  for (const item of outbox) setState(item.el, "pending");
  renderRooms();
}

function notice(text) {
  ui.notice.textContent = text || "";
  ui.notice.hidden = !text;
}

// -- login -------------------------------------------------------------------------------

function showLogin(error) {
  ui.app.hidden = true;
  ui.me.hidden = true;
  ui.signOut.hidden = true;
  ui.login.hidden = false;
  ui.loginError.textContent = error || "";
  ui.loginName.focus();
}

ui.loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  ui.loginButton.disabled = true;
  ui.loginError.textContent = "";
  try {
    const response = await fetch("/chat/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: ui.loginName.value }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.token) {
      ui.loginError.textContent = body.error || `sign-in failed (HTTP ${response.status})`;
      return;
    }
    localStorage.setItem(TOKEN_KEY, body.token);
    notice("");
    start();
  } catch (err) {
    ui.loginError.textContent = `sign-in failed: ${err.message}`;
  } finally {
    ui.loginButton.disabled = false;
  }
});

ui.signOut.addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  stop();
  outbox.length = 0;
  setStatus("signed-out");
  showLogin();
});

// -- the connection ----------------------------------------------------------------------

function stop() {
  if (socket) {
    socket.removeAllListeners();
    socket.io.removeAllListeners();
    socket.disconnect();
    socket = null;
  }
  joined = false;
}

function start() {
  stop();
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return showLogin();
  me = tokenUser(token);
  ui.me.textContent = me || "";
  ui.me.hidden = !me;
  ui.signOut.hidden = false;
  ui.login.hidden = true;
  ui.app.hidden = false;
  setStatus("connecting");
  renderRooms();
  const options = {
    // read on every (re)connection, so a new sign-in in another tab is used
    auth: (cb) => cb({ token: localStorage.getItem(TOKEN_KEY) || "" }),
  };
  if (polling) options.transports = ["polling"];
  socket = io("/chat", options);

  socket.on("connect", async () => {
    setStatus("connected");
    notice("");
    await joinRoom(room);
  });
  socket.on("disconnect", (reason) => {
    joined = false;
    setStatus(socket.active ? "reconnecting" : "offline");
    if (!socket.active) notice(`Disconnected by the server (${reason}). Reload the page to reconnect.`);
    clearTypers();
  });
  socket.on("connect_error", (err) => {
    if (socket.active) {
      setStatus("reconnecting"); // a transport error: the client retries by itself
      return;
    }
    // refused by the server's middleware: no automatic retry
    const reason = err.data && err.data.reason;
    const why = reason === "expired" ? "your session has expired"
      : reason === "missing" ? "you are not signed in"
      : "your sign-in token was not accepted";
    const text = `The server refused the connection: ${err.message}${reason ? ` (${reason})` : ""}: ${why}. Please sign in again.`;
    localStorage.removeItem(TOKEN_KEY);
    stop();
    setStatus("refused");
    notice(text);
    showLogin();
  });
  socket.on("welcome", (info) => {
    me = info.user;
    limits = info.limits || limits;
    ui.me.textContent = me;
    for (const name of info.rooms || []) knownRooms.add(name);
    renderRooms();
  });
  socket.on("message", (msg) => {
    if (msg.room !== room || !joined) return;
    if (typers.has(msg.user)) setTyper(msg.user, false);
    appendMessage(msg);
  });
  socket.on("presence", (info) => {
    if (info.room === room) renderPresence(info.users);
  });
  socket.on("typing", (info) => {
    if (info.room === room && info.user !== me) setTyper(info.user, info.typing);
  });
  socket.on("error", (info) => {
    if (info && info.event !== "typing") notice(`The server said: ${info.message || info}`);
  });
}

async function joinRoom(name) {
  if (!socket || !socket.connected) return;
  const current = socket;
  const stillIn = joined && name !== room; // a refused switch leaves us where we were
  joined = false;
  renderRooms();
  let answer;
  try {
    answer = await socket.timeout(ACK_TIMEOUT).emitWithAck("join", name);
  } catch {
    answer = { error: "no answer" };
  }
  if (socket !== current || !socket.connected) return; // "connect" joins again
  if (answer.error) {
    if (stillIn) joined = true;
    else if (answer.error === "rate limited" || answer.error === "no answer") {
      setTimeout(() => joined || joinRoom(name), RATE_LIMIT_PAUSE);
    }
    notice(`Cannot join #${name}: ${answer.error}`);
    renderRooms();
    return;
  }
  room = answer.room;
  joined = true;
  notice("");
  knownRooms.add(room);
  const url = new URL(location.href);
  url.searchParams.set("room", room);
  history.replaceState(null, "", url);
  clearTypers();
  renderRooms();
  renderRoom(answer.history);
  renderPresence(answer.users);
  pump();
}

// -- rendering ---------------------------------------------------------------------------

function renderRooms() {
  ui.rooms.replaceChildren();
  const canSwitch = socket && socket.connected && joined && outbox.length === 0;
  for (const name of knownRooms) {
    const li = node("li");
    const button = node("button", "", `#${name}`);
    button.type = "button";
    button.dataset.room = name;
    button.setAttribute("aria-current", String(name === room));
    button.disabled = !canSwitch && name !== room;
    button.addEventListener("click", () => name !== room && joinRoom(name));
    li.append(button);
    ui.rooms.append(li);
  }
  ui.roomTitle.textContent = `#${room}`;
}

function renderPresence(users) {
  ui.presence.replaceChildren();
  for (const user of users) {
    const li = node("li", user === me ? "self" : "", user === me ? `${user} (you)` : user);
    li.dataset.user = user;
    ui.presence.append(li);
  }
  ui.onlineCount.textContent = String(users.length);
}

function renderRoom(messages) {
  for (const url of blobUrls) URL.revokeObjectURL(url);
  blobUrls.clear();
  shown.clear();
  ui.messages.replaceChildren();
  for (const msg of messages) appendMessage(msg, false);
  // a queued message the server already has (its ack was lost with the connection) is
  // shown from the history: it leaves the outbox
  const stored = new Set(messages.filter((m) => m.user === me).map((m) => m.cid));
  for (const item of outbox.filter((i) => stored.has(i.cid))) outbox.splice(outbox.indexOf(item), 1);
  for (const item of outbox) if (item.room === room) ui.messages.append(item.el);
  if (!ui.messages.children.length) {
    ui.messages.append(node("li", "empty", `No messages in #${room} yet. Say hello!`));
  }
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function messageElement(user, ts, status) {
  const li = node("li", user === me ? "msg mine" : "msg");
  li.dataset.status = status;
  li.dataset.user = user;
  const meta = node("div", "meta");
  meta.append(node("span", "user", user), node("time", "", clock(ts)), node("span", "state"));
  li.append(meta);
  setState(li, status);
  return li;
}

function setState(li, status, detail) {
  li.dataset.status = status;
  const state = li.querySelector(".state");
  if (status === "pending") {
    state.textContent = socket && socket.connected ? "sending…" : "queued";
  } else if (status === "delivered") {
    state.textContent = li.classList.contains("mine") ? "✓ delivered" : "";
  } else {
    state.textContent = `not sent: ${detail}`;
  }
}

function imageBody(li, data, mime) {
  if (data) {
    const url = URL.createObjectURL(new Blob([data], { type: mime }));
    blobUrls.add(url);
    const img = node("img");
    img.src = url;
    img.alt = `image from ${li.dataset.user}`;
    li.append(img);
  } else {
    li.append(node("div", "body expired", "(image no longer kept)"));
  }
}

function appendMessage(msg, scroll = true) {
  if (shown.has(msg.id)) return;
  const li = messageElement(msg.user, msg.ts, "delivered");
  li.dataset.id = msg.id;
  if ("text" in msg) li.append(node("div", "body", msg.text));
  else imageBody(li, msg.image, msg.mime);
  shown.set(msg.id, li);
  addToList(li, scroll);
}

function addToList(li, scroll) {
  const empty = ui.messages.querySelector(".empty");
  if (empty) empty.remove();
  const atBottom = ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
  ui.messages.append(li);
  if (scroll || atBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function updateQueueInfo() {
  const waiting = outbox.length;
  const offline = !socket || !socket.connected;
  ui.queueInfo.hidden = !(waiting && offline);
  ui.queueInfo.textContent = `${waiting} queued: sent when the connection is back`;
}

// -- sending -----------------------------------------------------------------------------

function draft(item) {
  item.cid = newCid();
  item.room = room;
  item.el = messageElement(me || "you", Date.now(), "pending");
  item.el.dataset.cid = item.cid;
  if (item.kind === "text") item.el.append(node("div", "body", item.text));
  else imageBody(item.el, item.data, item.mime);
  addToList(item.el, true);
}

function enqueue(item) {
  if (outbox.length >= OUTBOX_LIMIT) {
    notice(`Too many messages waiting (${OUTBOX_LIMIT}); wait for the connection to come back.`);
    return false;
  }
  draft(item);
  outbox.push(item);
  updateQueueInfo();
  renderRooms();
  pump();
  return true;
}

async function pump() {
  if (pumping) return;
  pumping = true;
  try {
    while (outbox.length && socket && socket.connected && joined) {
      const item = outbox[0];
      const payload = item.kind === "text"
        ? { room: item.room, cid: item.cid, text: item.text }
        : { room: item.room, cid: item.cid, data: item.data };
      let answer;
      try {
        answer = await socket.timeout(ACK_TIMEOUT).emitWithAck(item.kind === "text" ? "message" : "image", payload);
      } catch {
        // no ack in time (or the connection dropped): the message stays first in the outbox
        // and is sent again with the same cid, later or after the next "connect"
        if (socket && socket.connected) setTimeout(pump, RATE_LIMIT_PAUSE);
        break;
      }
      if (answer && answer.error === "rate limited") {
        await sleep(RATE_LIMIT_PAUSE);
        continue;
      }
      const at = outbox.indexOf(item);
      if (at < 0) continue; // settled meanwhile (found in the history of a re-join)
      outbox.splice(at, 1);
      if (answer && answer.ok && shown.has(answer.id)) {
        item.el.remove(); // a retry of a message shown already (from the history)
      } else if (answer && answer.ok) {
        item.el.dataset.id = answer.id;
        item.el.querySelector("time").textContent = clock(answer.ts);
        shown.set(answer.id, item.el);
        setState(item.el, "delivered");
      } else {
        setState(item.el, "failed", (answer && answer.error) || "refused");
      }
    }
  } finally {
    pumping = false;
    updateQueueInfo();
    renderRooms();
  }
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.text.value.trim();
  if (!text) return;
  if (text.length > limits.text) {
    notice(`A message has at most ${limits.text} characters.`);
    return;
  }
  if (enqueue({ kind: "text", text })) {
    ui.text.value = "";
    resizeComposer();
    stopTyping();
  }
});

ui.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});

async function shareImage(file) {
  if (!file) return;
  const item = { kind: "image", mime: file.type || "application/octet-stream" };
  if (file.size > TRANSPORT_CEILING) {
    item.data = file; // shown, never sent
    draft(item);
    setState(item.el, "failed", `image too large (max ${Math.floor(limits.image / 1024)} KiB)`);
    return;
  }
  item.data = await file.arrayBuffer();
  enqueue(item);
}

ui.imageInput.addEventListener("change", () => {
  const file = ui.imageInput.files[0];
  ui.imageInput.value = "";
  shareImage(file);
});

ui.text.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
  if (file) {
    event.preventDefault();
    shareImage(file);
  }
});

ui.joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const name = normalRoom(ui.joinInput.value);
  if (!name) {
    notice("A room name is 1 to 32 letters, digits, '_' or '-'.");
    return;
  }
  notice("");
  ui.joinInput.value = "";
  knownRooms.add(name);
  if (socket && socket.connected && outbox.length === 0) joinRoom(name);
  else renderRooms();
});

// -- typing ------------------------------------------------------------------------------

function resizeComposer() {
  ui.text.style.height = "auto";
  ui.text.style.height = `${Math.min(ui.text.scrollHeight + 2, 128)}px`;
}

function stopTyping() {
  clearTimeout(typingStop);
  typingStop = null;
  // not volatile: a client drops a volatile packet while its transport is busy (as it is
  // right after sending the message), and this one should arrive
  if (typingSentAt && socket && socket.connected) socket.emit("typing", { room, typing: false });
  typingSentAt = 0;
}

ui.text.addEventListener("input", () => {
  resizeComposer();
  if (!socket || !socket.connected || !joined) return;
  if (!ui.text.value.trim()) return stopTyping();
  const now = Date.now();
  if (now - typingSentAt > TYPING_EVERY) {
    socket.volatile.emit("typing", { room, typing: true });
    typingSentAt = now;
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(stopTyping, TYPING_IDLE);
});

function setTyper(user, typing) {
  clearTimeout(typers.get(user));
  typers.delete(user);
  if (typing) typers.set(user, setTimeout(() => setTyper(user, false), TYPING_SHOWN));
  renderTypers();
}

function clearTypers() {
  for (const timer of typers.values()) clearTimeout(timer);
  typers.clear();
  renderTypers();
}

function renderTypers() {
  const users = [...typers.keys()].sort();
  ui.typing.dataset.users = users.join(",");
  ui.typing.textContent = users.length === 0 ? ""
    : users.length === 1 ? `${users[0]} is typing…`
    : users.length <= 3 ? `${users.slice(0, -1).join(", ")} and ${users.at(-1)} are typing…`
    : `${users.length} people are typing…`;
}

// -- go ----------------------------------------------------------------------------------

if (localStorage.getItem(TOKEN_KEY)) start();
else showLogin();
