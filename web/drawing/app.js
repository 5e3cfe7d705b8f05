// The collaborative drawing board (server side: pyserver/demo/drawing.py).
//
// The page keeps a mirror of the board's synced state ({epoch, version, strokes}) and a list
// of its own batches that the server has not confirmed yet (`pending`). Segments are drawn
// at once, collected into a batch and flushed every FLUSH_MS (or when a batch is full), so a
// fast hand sends ~25 small messages a second, not one per mouse event. A batch is confirmed
// when its delta comes back in the board's sequence. While disconnected, batches wait in
// `pending`; after reconnecting the page asks "sync" with the epoch and version it has, gets
// only what it missed (or a snapshot), drops the batches the server already had, then sends
// the rest in order.
//
// For tests: #status[data-state] and the data-* attributes of #canvas show the state;
// window.drawingApp.socket is the Socket.IO socket.

const FLUSH_MS = 40;
const MAX_QUEUED_SEGMENTS = 20000;
const ACK_TIMEOUT_MS = 10000;
const BOARD_RE = /^[A-Za-z0-9_-]{1,32}$/;

const params = new URLSearchParams(location.search);
const board = params.get("board") || "main";
const transport = params.get("transport");

const $ = (selector) => document.querySelector(selector);
const canvas = $("#canvas");
const ctx = canvas.getContext("2d");
const statusEl = $("#status");
const noticeEl = $("#notice");
const userCountEl = $("#user-count");
const yourColorEl = $("#your-color");
const clearBtn = $("#clear-btn");
const hintEl = $("#hint");
const fillEl = $("#fill");

$("#board-name").textContent = board;
document.title = `${board} · Collaborative Drawing`;

// ---- state ---------------------------------------------------------------------------------

let myColor = null; // given by the server; sent back on reconnect to keep it
let maxBatch = 256;
let maxSegments = 0;
let brushWidth = 4;

const view = { epoch: null, version: 0, strokes: [], segments: 0 }; // the server's board, as we know it
let synced = false; // view is current for this connection
let syncing = false;
let lastSync = "";

const clientId = Math.random().toString(36).slice(2, 10);
let batchCounter = 0;
let current = null; // the batch being drawn: {w, p}
let pending = []; // our batches not confirmed yet: {id, w, p, sent}
let noticeTimer = 0;
let reconnectAttempt = 0;

// ---- drawing -------------------------------------------------------------------------------

function strokePath(color, width, p) {
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  for (let i = 0; i < p.length; i += 4) {
    ctx.moveTo(p[i], p[i + 1]);
    ctx.lineTo(p[i + 2], p[i + 3]);
  }
  ctx.stroke();
}

function ownColor() {
  return myColor || "#868e96";
}

function redraw() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (const s of view.strokes) strokePath(s.c, s.w, s.p);
  for (const b of pending) strokePath(ownColor(), b.w, b.p);
  if (current) strokePath(ownColor(), current.w, current.p);
  updateInfo();
}

function segmentsOf(batches) {
  return batches.reduce((n, b) => n + b.p.length / 4, 0);
}

function queuedSegments() {
  return segmentsOf(pending) + (current ? current.p.length / 4 : 0);
}

// ---- status and info -----------------------------------------------------------------------

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.className = `status ${state}`;
  statusEl.textContent = text;
}

function notice(text, ms = 6000) {
  noticeEl.textContent = text;
  noticeEl.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { noticeEl.hidden = true; }, ms);
}

function updateInfo() {
  const waiting = queuedSegments();
  const used = view.segments;
  hintEl.hidden = !synced || used + waiting > 0;
  if (maxSegments) {
    const percent = Math.min(100, Math.round((100 * used) / maxSegments));
    fillEl.textContent = `Board ${used && !percent ? "<1" : percent}% full`;
    fillEl.classList.toggle("high", percent >= 80);
  }
  Object.assign(canvas.dataset, {
    epoch: view.epoch || "",
    version: String(view.version),
    strokes: String(view.strokes.length),
    pending: String(waiting),
    synced: String(synced),
    lastSync,
  });
  if (statusEl.dataset.state === "reconnecting") {
    const attempt = reconnectAttempt ? ` (attempt ${reconnectAttempt})` : "";
    const queued = waiting ? ` · ${waiting} segment${waiting === 1 ? "" : "s"} waiting to be sent` : "";
    statusEl.textContent = `Reconnecting…${attempt}${queued}`;
  }
}

// ---- the board's state sync ----------------------------------------------------------------

function settle(id) {
  const i = pending.findIndex((b) => b.id === id);
  if (i >= 0) pending.splice(i, 1);
}

function commit(stroke) {
  view.strokes.push(stroke);
  view.segments += stroke.p.length / 4;
  strokePath(stroke.c, stroke.w, stroke.p);
  settle(stroke.id);
}

function applySnapshot(m) {
  view.epoch = m.epoch;
  view.version = m.version;
  view.strokes = m.state.slice();
  view.segments = segmentsOf(view.strokes);
  const known = new Set(view.strokes.map((s) => s.id));
  pending = pending.filter((b) => !known.has(b.id));
  redraw();
}

function applyLiveDelta(m) {
  if (m.epoch !== view.epoch || m.seq > view.version + 1) {
    requestSync(); // something was missed
    return;
  }
  if (m.seq <= view.version) return; // already have it
  commit(m.delta);
  view.version = m.seq;
  updateInfo();
}

function requestSync() {
  if (syncing || !socket.connected) return;
  syncing = true;
  const known = view.epoch ? { epoch: view.epoch, version: view.version } : null;
  // a callback, not a promise: it runs before the packets that follow the answer
  socket.timeout(ACK_TIMEOUT_MS).emit("sync", known, (err, answer) => {
    syncing = false;
    if (err) {
      if (socket.connected) requestSync(); // no answer in time: ask again
      return; // disconnected: the next connect syncs again
    }
    onSync(answer);
  });
}

function onSync(answer) {
  if (answer.type === "snapshot") {
    lastSync = "snapshot";
    applySnapshot(answer);
  } else if (answer.type === "deltas" && answer.epoch === view.epoch) {
    lastSync = `deltas:${answer.deltas.length}`;
    for (const [seq, delta] of answer.deltas) {
      if (seq === view.version + 1) {
        commit(delta);
        view.version = seq;
      }
    }
  } else {
    requestSync();
    return;
  }
  synced = true;
  updateInfo();
  send();
}

// ---- sending -------------------------------------------------------------------------------

function flushCurrent() {
  if (current && current.p.length) {
    pending.push({ id: `${clientId}-${++batchCounter}`, w: current.w, p: current.p, sent: false });
  }
  current = null;
}

function send() {
  if (!socket.connected || !synced || syncing) return;
  const i = pending.findIndex((b) => !b.sent);
  if (i < 0) return;
  const batch = pending[i];
  // merge the queued batches that follow (same brush) into this one, up to a full batch
  while (i + 1 < pending.length) {
    const next = pending[i + 1];
    if (next.sent || next.w !== batch.w || (batch.p.length + next.p.length) / 4 > maxBatch) break;
    batch.p = batch.p.concat(next.p);
    pending.splice(i + 1, 1);
  }
  batch.sent = true;
  socket
    .timeout(ACK_TIMEOUT_MS)
    .emit("strokes", { id: batch.id, w: batch.w, p: batch.p }, (err, res) => onAck(batch, err, res));
}

function onAck(batch, err, res) {
  if (!pending.includes(batch)) return; // confirmed by its delta already, or dropped
  if (err) {
    // disconnected or no answer: the next sync tells whether the server has it
    batch.sent = false;
    if (socket.connected) {
      synced = false;
      requestSync();
    }
    return;
  }
  if (res && res.ok) {
    settle(batch.id);
  } else if (res && res.error === "rate limited") {
    batch.sent = false; // try again on a later tick
  } else if (res && res.error === "board full") {
    pending = [];
    current = null;
    notice(`This board is full (${res.max} segments): clear it or switch to another board.`, 10000);
    redraw();
  } else {
    settle(batch.id);
    notice(`A stroke was refused: ${res && res.error}`);
    redraw();
  }
  updateInfo();
}

setInterval(() => {
  flushCurrent();
  send();
  updateInfo();
}, FLUSH_MS);

// ---- pointer input (mouse, touch, pen) -----------------------------------------------------

let drawing = null; // {id, x, y, moved}

function toBoard(e) {
  const rect = canvas.getBoundingClientRect();
  const x = ((e.clientX - rect.left - canvas.clientLeft) * canvas.width) / canvas.clientWidth;
  const y = ((e.clientY - rect.top - canvas.clientTop) * canvas.height) / canvas.clientHeight;
  const clamp = (v, max) => Math.round(Math.min(Math.max(v, 0), max) * 10) / 10;
  return [clamp(x, canvas.width), clamp(y, canvas.height)];
}

function addSegment(x0, y0, x1, y1) {
  if (queuedSegments() >= MAX_QUEUED_SEGMENTS) {
    notice("Too much is waiting to be sent: wait for the connection to come back.");
    return;
  }
  if (current && current.w !== brushWidth) flushCurrent();
  if (!current) current = { w: brushWidth, p: [] };
  current.p.push(x0, y0, x1, y1);
  strokePath(ownColor(), brushWidth, [x0, y0, x1, y1]);
  if (current.p.length / 4 >= maxBatch) flushCurrent();
}

canvas.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return;
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId);
  const [x, y] = toBoard(e);
  drawing = { id: e.pointerId, x, y, moved: false };
});

canvas.addEventListener("pointermove", (e) => {
  if (!drawing || e.pointerId !== drawing.id) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
  for (const ev of events.length ? events : [e]) {
    const [x, y] = toBoard(ev);
    if (x === drawing.x && y === drawing.y) continue;
    addSegment(drawing.x, drawing.y, x, y);
    drawing.x = x;
    drawing.y = y;
    drawing.moved = true;
  }
});

function endStroke(e) {
  if (!drawing || e.pointerId !== drawing.id) return;
  if (!drawing.moved && e.type === "pointerup") {
    // a tap or click is a dot: a segment a tenth of a unit long (a zero-length one draws nothing)
    const { x, y } = drawing;
    addSegment(x, y, x < canvas.width ? x + 0.1 : x - 0.1, y);
  }
  drawing = null;
  flushCurrent();
  send();
}

canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

// ---- controls ------------------------------------------------------------------------------

for (const button of document.querySelectorAll(".width")) {
  button.addEventListener("click", () => {
    brushWidth = Number(button.dataset.width);
    for (const b of document.querySelectorAll(".width")) {
      b.setAttribute("aria-checked", String(b === button));
    }
  });
}

clearBtn.addEventListener("click", async () => {
  if (!socket.connected) {
    notice("You are offline: the board can be cleared once the connection is back.");
    return;
  }
  current = null;
  pending = pending.filter((b) => b.sent); // those may land before the clear; the rest go
  try {
    await socket.timeout(ACK_TIMEOUT_MS).emitWithAck("clear");
  } catch {
    notice("The board could not be cleared: no answer from the server.");
  }
});

const boardInput = $("#board-input");
boardInput.value = "";
$("#board-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = boardInput.value.trim();
  if (!BOARD_RE.test(name)) {
    notice("A board name is 1 to 32 letters, digits, '-' or '_'.");
    return;
  }
  const next = new URLSearchParams(location.search);
  next.set("board", name);
  location.search = next.toString();
});

// ---- the connection ------------------------------------------------------------------------

const options = { auth: (cb) => cb({ board, color: myColor }) };
if (transport === "polling" || transport === "websocket") options.transports = [transport];
const socket = io("/drawing", options);
window.drawingApp = { socket };

socket.on("connect", () => {
  reconnectAttempt = 0;
  setStatus("connected", transport ? `Connected (${transport})` : "Connected");
  synced = false;
  requestSync();
});

socket.on("disconnect", (reason) => {
  synced = false;
  syncing = false;
  for (const b of pending) b.sent = false;
  userCountEl.classList.add("stale"); // not known while away
  if (socket.active) {
    setStatus("reconnecting", "Reconnecting…");
    updateInfo();
  } else {
    setStatus("error", `Disconnected (${reason})`);
  }
});

socket.io.on("reconnect", () => {
  statusEl.dataset.reconnects = String(Number(statusEl.dataset.reconnects || 0) + 1);
});

socket.io.on("reconnect_attempt", (attempt) => {
  reconnectAttempt = attempt;
  setStatus("reconnecting", "Reconnecting…");
  updateInfo();
});

socket.on("connect_error", (err) => {
  if (socket.active) {
    setStatus("reconnecting", "Reconnecting…");
    updateInfo();
  } else {
    setStatus("error", `Cannot join this board: ${err.message}`); // refused by the server
  }
});

socket.on("init", (data) => {
  myColor = data.color;
  maxBatch = data.maxBatch;
  maxSegments = data.maxSegments;
  updateInfo();
  yourColorEl.style.backgroundColor = myColor;
  yourColorEl.dataset.color = myColor;
  yourColorEl.title = myColor;
  document.documentElement.style.setProperty("--brush", myColor);
});

socket.on("user count", (count) => {
  userCountEl.textContent = `Users: ${count}`;
  userCountEl.classList.remove("stale");
  userCountEl.dataset.count = String(count);
});

socket.on("delta", (m) => {
  if (synced && !syncing) applyLiveDelta(m);
  // else: the sync answer on its way already covers it (it was sent after this)
});

socket.on("snapshot", (m) => {
  if (synced && !syncing) applySnapshot(m);
});

redraw();
