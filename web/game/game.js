// Orb Rush: the browser side of pyserver's multiplayer demo (namespace /game).
//
// The server is authoritative: this page sends only its key state ({seq, dx, dy}) and draws
// what the server says. State arrives as a snapshot (on join) and then as numbered deltas,
// one per tick in which something changed. A gap in the sequence numbers (a volatile delta
// dropped on a slow link, a reconnect) makes the page ask "sync" with what it has, and the
// server answers the missed deltas or a fresh snapshot.
//
// Rendering interpolates between the two server states around "now - 100 ms" (in server
// tick time), so movement looks smooth at any frame rate although the server ticks at 20 Hz.
//
// Hooks for tests live in the DOM: #status[data-state][data-transport], #game[data-me][data-joins]
// [data-version][data-epoch][data-last-sync][data-resyncs], and one
// #players li[data-player-id][data-x][data-y][data-score] per player (latest server state),
// #arena[data-drawn][data-me-x][data-me-y] (what the last frame drew: interpolated).

const INTERP_DELAY = 100; // ms behind the newest server state
const MAX_FRAMES = 60;

const $ = (id) => document.getElementById(id);
const root = $("game");
const canvas = $("arena");
const ctx = canvas.getContext("2d");
const statusEl = $("status");
const statusText = $("status-text");
const notice = $("notice");
const playerList = $("players");

// -- who and where ----------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const MATCH_RE = /^[A-Za-z0-9_-]{1,32}$/;
const matchName = MATCH_RE.test(params.get("match") || "") ? params.get("match") : "lobby";
const forcePolling = params.get("transport") === "polling";
$("match-name").textContent = matchName;
$("match-input").value = matchName;
document.title = `Orb Rush · ${matchName}`;

function randomToken() {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

function storageGet(store, key) {
  try { return store.getItem(key); } catch { return null; }
}

function storageSet(store, key, value) {
  try { store.setItem(key, value); } catch { /* private mode: keep it in memory */ }
}

// one token per tab: a reconnect takes this tab's player back (score and place)
let token = storageGet(sessionStorage, "orb-rush-token");
if (!token || !/^[A-Za-z0-9_-]{16,64}$/.test(token)) {
  token = randomToken();
  storageSet(sessionStorage, "orb-rush-token", token);
}

const ADJECTIVES = ["Swift", "Brave", "Lucky", "Sneaky", "Jolly", "Zippy", "Mighty", "Sunny"];
const ANIMALS = ["Fox", "Otter", "Panda", "Hawk", "Lynx", "Koala", "Gecko", "Moose"];
const pick = (list) => list[Math.floor(Math.random() * list.length)];
let playerName = (params.get("name") || storageGet(localStorage, "orb-rush-name") || "").slice(0, 20);
if (!playerName) {
  playerName = `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;
  storageSet(localStorage, "orb-rush-name", playerName);
}

$("match-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("match-input").value.trim();
  if (!MATCH_RE.test(value)) {
    $("match-input").setCustomValidity("letters, digits, - or _ (up to 32)");
    $("match-input").reportValidity();
    return;
  }
  const next = new URLSearchParams(location.search);
  next.set("match", value);
  location.search = next.toString();
});
$("match-input").addEventListener("input", () => $("match-input").setCustomValidity(""));

// -- connection status ------------------------------------------------------------------------

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusText.textContent = text;
}

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

const socket = io("/game", forcePolling ? { transports: ["polling"] } : {});

function showTransport() {
  const name = socket.io.engine && socket.io.engine.transport ? socket.io.engine.transport.name : "";
  statusEl.dataset.transport = name;
  $("net-transport").textContent = name || "–";
}

// -- the synced state -------------------------------------------------------------------------

const net = { epoch: null, version: 0, syncing: false, pending: [], resyncs: 0 };
let state = null; // {tick, players: {id: {name, colour, x, y, score}}, orbs: {id: [x, y]}}
let me = null;
let arena = { w: 800, h: 500, player_r: 16, orb_r: 9, tick_rate: 20 };
let frames = []; // [{t, players: {id: {x, y}}, orbs: {id: [x, y]}}], t in server ms
let offset = null; // performance.now() - server ms, smallest seen (least delayed)

const tickMs = (tick) => (tick * 1000) / arena.tick_rate;

function applyDelta(delta) {
  state.tick = delta.tick;
  for (const [id, fields] of Object.entries(delta.players || {})) {
    state.players[id] = Object.assign(state.players[id] || {}, fields);
  }
  for (const id of delta.left || []) delete state.players[id];
  Object.assign(state.orbs, delta.orbs || {});
  record();
}

function record() {
  const t = tickMs(state.tick);
  const frame = { t, players: {}, orbs: { ...state.orbs } };
  for (const [id, p] of Object.entries(state.players)) frame.players[id] = { x: p.x, y: p.y };
  const last = frames[frames.length - 1];
  if (last && t <= last.t) {
    frames[frames.length - 1] = frame; // same tick (a join or leave between ticks)
  } else {
    // no delta for a while means nothing moved: hold the last frame until the tick before
    if (last && t - last.t > tickMs(1) + 1) frames.push({ ...last, t: t - tickMs(1) });
    frames.push(frame);
  }
  if (frames.length > MAX_FRAMES) frames = frames.slice(-MAX_FRAMES);
}

function observeTick(tick) {
  const sample = performance.now() - tickMs(tick);
  if (offset === null || sample < offset) offset = sample;
  else offset += (sample - offset) * 0.02; // follow a slow drift upwards
}

function handleSync(sync, tick) {
  if (sync.type === "snapshot") {
    net.epoch = sync.epoch;
    net.version = sync.version;
    state = sync.state;
    frames = [];
    offset = null;
    record();
  } else if (sync.type === "deltas" && sync.epoch === net.epoch && sync.from === net.version) {
    for (const [seq, delta] of sync.deltas) {
      applyDelta(delta);
      net.version = seq;
    }
  } else {
    requestSync();
    return;
  }
  root.dataset.lastSync = sync.type;
  $("net-sync").textContent = sync.type === "deltas" ? `${sync.deltas.length} deltas` : "snapshot";
  if (typeof tick === "number") observeTick(tick);
  afterChange();
  const pending = net.pending;
  net.pending = [];
  pending.sort((a, b) => a.seq - b.seq).forEach(onDelta);
}

function onDelta(message) {
  if (net.syncing || state === null) {
    if (net.pending.length < 200) net.pending.push(message);
    return;
  }
  if (message.epoch !== net.epoch) return requestSync();
  if (message.seq <= net.version) return; // already have it
  if (message.seq !== net.version + 1) return requestSync(); // missed some
  applyDelta(message.delta);
  net.version = message.seq;
  observeTick(message.delta.tick);
  afterChange();
}

function requestSync() {
  if (net.syncing || !socket.connected) return;
  net.syncing = true;
  net.resyncs += 1;
  socket.timeout(5000).emit("sync", { epoch: net.epoch, version: net.version }, (err, reply) => {
    net.syncing = false;
    if (err || !reply || reply.error) {
      if (socket.connected) setTimeout(requestSync, 500);
      return;
    }
    handleSync(reply.sync, reply.tick);
  });
}

socket.on("delta", onDelta);

// -- joining ----------------------------------------------------------------------------------

function join() {
  net.syncing = true; // deltas wait until the join answer is applied
  net.pending = [];
  const known = net.epoch ? { epoch: net.epoch, version: net.version } : null;
  socket.timeout(8000).emit("join", { match: matchName, name: playerName, token, known }, (err, reply) => {
    net.syncing = false;
    if (err) {
      if (socket.connected) join();
      return;
    }
    if (reply.error) {
      setStatus("error", "refused");
      showNotice(reply.error);
      return;
    }
    me = reply.you;
    arena = reply.arena;
    root.dataset.me = me;
    root.dataset.joins = String(Number(root.dataset.joins || 0) + 1);
    showNotice("");
    setStatus("connected", "connected");
    handleSync(reply.sync, reply.tick);
    sendInput(true); // keys still held across a reconnect
  });
}

socket.on("connect", () => {
  showTransport();
  socket.io.engine.once("upgrade", showTransport);
  setStatus("connecting", "joining…");
  join();
});

socket.on("disconnect", (reason) => {
  showTransport();
  if (reason === "io client disconnect" || reason === "io server disconnect") {
    setStatus("disconnected", "disconnected");
  } else {
    setStatus("reconnecting", "reconnecting…");
  }
});

socket.on("connect_error", () => setStatus("reconnecting", "server unreachable, retrying…"));

socket.on("replaced", () => {
  setStatus("disconnected", "playing elsewhere");
  showNotice("You joined this match from another page. Reload to play here.");
  socket.disconnect();
});

socket.on("error", (error) => {
  if (error && error.message === "rate limited") console.warn("input rate limited");
});

// -- input: key state, sent when it changes ---------------------------------------------------

const KEYS = {
  ArrowUp: "up", KeyW: "up", ArrowDown: "down", KeyS: "down",
  ArrowLeft: "left", KeyA: "left", ArrowRight: "right", KeyD: "right",
};
const held = new Set();
let inputSeq = 0;
let sent = { dx: 0, dy: 0 };

// a finger or the mouse held on the arena steers towards it (the keys win when held)
let pointer = null; // {x, y} in arena units
let drawnMe = null; // where the last frame drew this player

function direction() {
  let dx = (held.has("right") ? 1 : 0) - (held.has("left") ? 1 : 0);
  let dy = (held.has("down") ? 1 : 0) - (held.has("up") ? 1 : 0);
  if (!dx && !dy && pointer && drawnMe) {
    const ax = pointer.x - drawnMe.x;
    const ay = pointer.y - drawnMe.y;
    const dead = arena.player_r / 2;
    // eight directions: an axis counts when it is a fair share of the way
    if (Math.abs(ax) > dead && Math.abs(ax) > Math.abs(ay) * 0.4) dx = Math.sign(ax);
    if (Math.abs(ay) > dead && Math.abs(ay) > Math.abs(ax) * 0.4) dy = Math.sign(ay);
  }
  return { dx, dy };
}

function toArena(event) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * arena.w) / box.width,
    y: ((event.clientY - box.top) * arena.h) / box.height,
  };
}

canvas.addEventListener("pointerdown", (event) => {
  canvas.setPointerCapture(event.pointerId);
  pointer = toArena(event);
  sendInput();
});
canvas.addEventListener("pointermove", (event) => {
  if (pointer) pointer = toArena(event);
});
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
  canvas.addEventListener(type, () => {
    pointer = null;
    sendInput();
  });
}

function sendInput(force = false) {
  const { dx, dy } = direction();
  if (!force && dx === sent.dx && dy === sent.dy) return;
  if (force && dx === 0 && dy === 0) return;
  sent = { dx, dy };
  if (socket.connected && me) socket.emit("input", { seq: ++inputSeq, dx, dy });
}

function typing(event) {
  const tag = event.target && event.target.tagName;
  return tag === "INPUT" || tag === "TEXTAREA";
}

window.addEventListener("keydown", (event) => {
  const key = KEYS[event.code];
  if (!key || typing(event)) return;
  event.preventDefault();
  held.add(key);
  sendInput();
});

window.addEventListener("keyup", (event) => {
  const key = KEYS[event.code];
  if (!key) return;
  held.delete(key);
  sendInput();
});

window.addEventListener("blur", () => {
  held.clear();
  pointer = null;
  sendInput();
});

// -- the side panel ---------------------------------------------------------------------------

const rows = new Map();

function afterChange() {
  root.dataset.epoch = net.epoch || "";
  root.dataset.version = String(net.version);
  root.dataset.resyncs = String(net.resyncs);
  $("net-version").textContent = String(net.version);
  $("net-resyncs").textContent = String(net.resyncs);
  const players = Object.entries(state.players);
  $("player-count").textContent = String(players.length);
  for (const [id, row] of rows) {
    if (!(id in state.players)) {
      row.remove();
      rows.delete(id);
    }
  }
  players.sort((a, b) => b[1].score - a[1].score || a[0].localeCompare(b[0]));
  players.forEach(([id, p], index) => {
    let row = rows.get(id);
    if (!row) {
      row = document.createElement("li");
      row.dataset.playerId = id;
      row.innerHTML = '<span class="swatch"></span><span class="name"></span><span class="score"></span>';
      rows.set(id, row);
    }
    row.dataset.x = String(p.x);
    row.dataset.y = String(p.y);
    row.dataset.score = String(p.score);
    row.dataset.me = String(id === me);
    row.querySelector(".swatch").style.background = p.colour;
    const name = row.querySelector(".name");
    name.textContent = p.name;
    if (id === me) {
      const badge = document.createElement("span");
      badge.className = "you";
      badge.textContent = "you";
      name.append(badge);
    }
    row.querySelector(".score").textContent = String(p.score);
    if (playerList.children[index] !== row) playerList.insertBefore(row, playerList.children[index] || null);
  });
}

// -- drawing ----------------------------------------------------------------------------------

function resize() {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(arena.w * ratio);
  canvas.height = Math.round(arena.h * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
}

function sample() {
  if (frames.length === 0) return null;
  const now = offset === null ? Infinity : performance.now() - offset - INTERP_DELAY;
  const last = frames[frames.length - 1];
  if (now >= last.t) return last;
  if (now <= frames[0].t) return frames[0];
  let i = frames.length - 2;
  while (i > 0 && frames[i].t > now) i -= 1;
  const a = frames[i];
  const b = frames[i + 1];
  const k = (now - a.t) / (b.t - a.t);
  const players = {};
  for (const [id, pb] of Object.entries(b.players)) {
    const pa = a.players[id];
    players[id] = pa ? { x: pa.x + (pb.x - pa.x) * k, y: pa.y + (pb.y - pa.y) * k } : pb;
  }
  return { t: now, players, orbs: k < 0.5 ? a.orbs : b.orbs };
}

function drawGrid() {
  ctx.fillStyle = "#111827";
  ctx.fillRect(0, 0, arena.w, arena.h);
  ctx.strokeStyle = "rgba(255, 255, 255, 0.05)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let x = 50; x < arena.w; x += 50) { ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, arena.h); }
  for (let y = 50; y < arena.h; y += 50) { ctx.moveTo(0, y + 0.5); ctx.lineTo(arena.w, y + 0.5); }
  ctx.stroke();
}

function drawOrb(x, y, time) {
  const r = arena.orb_r * (1 + 0.12 * Math.sin(time / 180 + x));
  const glow = ctx.createRadialGradient(x, y, 0, x, y, r * 2.6);
  glow.addColorStop(0, "rgba(253, 224, 71, 0.55)");
  glow.addColorStop(1, "rgba(253, 224, 71, 0)");
  ctx.fillStyle = glow;
  ctx.beginPath();
  ctx.arc(x, y, r * 2.6, 0, Math.PI * 2);
  ctx.fill();
  ctx.fillStyle = "#fde047";
  ctx.beginPath();
  ctx.arc(x, y, r, 0, Math.PI * 2);
  ctx.fill();
  ctx.fillStyle = "rgba(255, 255, 255, 0.8)";
  ctx.beginPath();
  ctx.arc(x - r * 0.3, y - r * 0.3, r * 0.3, 0, Math.PI * 2);
  ctx.fill();
}

function drawPlayer(id, p, x, y) {
  const r = arena.player_r;
  if (id === me) {
    drawnMe = { x, y };
    canvas.dataset.meX = x.toFixed(2);
    canvas.dataset.meY = y.toFixed(2);
    ctx.strokeStyle = "rgba(255, 255, 255, 0.85)";
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.arc(x, y, r + 5, 0, Math.PI * 2);
    ctx.stroke();
  }
  ctx.fillStyle = p.colour;
  ctx.beginPath();
  ctx.arc(x, y, r, 0, Math.PI * 2);
  ctx.fill();
  ctx.fillStyle = "rgba(255, 255, 255, 0.25)";
  ctx.beginPath();
  ctx.arc(x - r * 0.3, y - r * 0.35, r * 0.4, 0, Math.PI * 2);
  ctx.fill();
}

function drawLabel(id, p, x, y) {
  const r = arena.player_r;
  ctx.font = "600 12px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.lineWidth = 3;
  ctx.strokeStyle = "rgba(17, 24, 39, 0.85)";
  const label = `${p.name} · ${p.score}`;
  const ly = y - r - (id === me ? 9 : 5);
  ctx.strokeText(label, x, ly);
  ctx.fillStyle = "rgba(255, 255, 255, 0.92)";
  ctx.fillText(label, x, ly);
}

function draw(time) {
  drawGrid();
  const frame = state ? sample() : null;
  if (frame) {
    for (const [x, y] of Object.values(frame.orbs)) drawOrb(x, y, time);
    const ids = Object.keys(frame.players).filter((id) => id in state.players);
    ids.sort((a, b) => (a === me) - (b === me)); // draw yourself on top
    for (const id of ids) drawPlayer(id, state.players[id], frame.players[id].x, frame.players[id].y);
    for (const id of ids) drawLabel(id, state.players[id], frame.players[id].x, frame.players[id].y);
    canvas.dataset.drawn = String(ids.length);
    if (pointer) sendInput(); // steering follows the player as it moves
  } else {
    ctx.fillStyle = "rgba(255, 255, 255, 0.6)";
    ctx.font = "600 16px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText("waiting for the server…", arena.w / 2, arena.h / 2);
  }
  requestAnimationFrame(draw);
}

resize();
window.addEventListener("resize", resize);
requestAnimationFrame(draw);
