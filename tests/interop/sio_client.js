#!/usr/bin/env node
// Drives the official `socket.io-client` package (v4, protocol v5) against a Socket.IO server
// that speaks the small "test protocol" below, and prints, one JSON object per line on stdout,
// what the clients observed. The Python tests (test_socketio_node_client.py) assert on these
// lines; this script only observes. It exits non-zero on its own timeout or on an exception.
//
// Usage:
//   node sio_client.js --url http://127.0.0.1:PORT --scenario NAME
//        [--transports polling|websocket|both] [--namespace /chat] [--auth JSON]
//        [--timeout MS]
//
// Scenarios: basic, refused, invalid-namespace, acks, parallel-acks, binary, large, namespaces,
// mixed-namespaces, dyn-parent, rooms, room-acks, server-ops, room-tasks, volatile, extras,
// upgrade-burst, leave-while-asked, server-disconnect, client-disconnect, reconnect,
// heartbeat, no-pong, connect-timeout, rate-limit, recovery (each described where it is
// defined below).
// --auth is each scenario's auth payload (some scenarios also read fields of it: tag, room).
//
// The test protocol (what the server under test implements, on "/", "/chat" and the dynamic
// namespaces /dyn-<digits>):
//   on connect       the middleware refuses auth {token: "bad"} with
//                    ConnectionRefused("Authentication error", data={"reason": "bad token"});
//                    otherwise the server emits "init" {id, nsp, auth}
//   "echo" ...args   the server emits "echo" with the same arguments back to the sender
//   "echo-ack" ...   acks with the same arguments (a tuple: several ack arguments)
//   "join" room      joins; acks the sorted list of the socket's rooms
//   "leave" room     leaves; acks the sorted list of the socket's rooms
//   "broadcast" {form, rooms, except, event, data}
//                    emits `event` with `data` in the named form (see FORMS in the tests), acks "ok"
//   "fence" n        sio.emit("fence", n) to everyone in the namespace; acks n
//   "ask" {event, args, timeout}
//                    await socket.emit_with_ack(event, *args, timeout) on the sender; acks
//                    {reply: [...]} or {error: "<exception type>"}
//   "ask-room" {room, event, data, timeout}
//                    await sio.to(room).timeout(t).emit_with_ack(event, data); acks
//                    {replies: [...]} or {error: "<exception type>"}
//   "fetch-room" room  acks the sorted ids of await sio.in_(room).fetch_sockets()
//   "volatile" n     socket.volatile.emit("vol", i) n times, then socket.emit("after-volatile", n)
//   "disconnect-me"  socket.disconnect() on the server side
//   and more (burst, handshake, whoami, boom, sockets-join, ...): see conftest.SioSite.
//
// Binary values are printed as {"$bin": "<hex>"} (Buffer, ArrayBuffer and typed arrays alike).
//
// Lines printed (field "event"); "client" names the client within the scenario:
//   start {scenario, transports}           connect {client, id, nsp, transport}
//   connect_error {client, message, data}   disconnect {client, reason}
//   init {client, data}    got {client, name, args}     ack {client, name, args}
//   upgrade {client, transport}   form {form, received: {A: [...], ...}}
//   reconnect_attempt {n}   reconnect {n}   step {name, ...}
//   done {...}   timeout {waiting_for}   exception {message, stack}
"use strict";

const path = require("path");
const { io, Manager } = require(path.join(__dirname, "node_modules", "socket.io-client"));

function parseArgs(argv) {
  const out = {
    url: null,
    scenario: "basic",
    transports: "both",
    namespace: "/",
    auth: "{}",
    timeout: 20000,
  };
  for (let i = 2; i < argv.length; i++) {
    const key = argv[i];
    if (!key.startsWith("--")) throw new Error(`unexpected argument ${key}`);
    const name = key.slice(2);
    if (!(name in out)) throw new Error(`unknown option ${key}`);
    const value = argv[++i];
    if (value === undefined) throw new Error(`option ${key} needs a value`);
    out[name] = typeof out[name] === "number" ? Number(value) : value;
  }
  if (!out.url) throw new Error("--url is required");
  out.auth = JSON.parse(out.auth);
  return out;
}

const args = parseArgs(process.argv);
let waitingFor = "start";

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// JSON-friendly form of what the client got: binary as {"$bin": hex}.
function enc(v) {
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(v).toString("hex") };
  if (ArrayBuffer.isView(v)) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") };
  if (Array.isArray(v)) return v.map(enc);
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = enc(v[k]);
    return o;
  }
  return v === undefined ? null : v;
}

function transportsOption() {
  switch (args.transports) {
    case "polling":
      return ["polling"];
    case "websocket":
      return ["websocket"];
    case "both":
      return ["polling", "websocket"];
    default:
      throw new Error(`bad --transports ${args.transports}`);
  }
}

const sockets = [];

// A client of its own (its own Manager, hence its own Engine.IO connection) unless `manager`.
function client(name, { nsp = "/", auth = {}, manager = null, reconnection = false } = {}) {
  const opts = { auth, transports: transportsOption(), upgrade: args.transports === "both" };
  let socket;
  if (manager) {
    socket = manager.socket(nsp, { auth });
  } else {
    socket = io(args.url + (nsp === "/" ? "" : nsp), {
      ...opts,
      forceNew: true,
      reconnection,
      reconnectionDelay: 100,
      reconnectionDelayMax: 300,
      randomizationFactor: 0,
      timeout: 5000,
    });
  }
  socket.label = name;
  socket.seen = [];
  socket.on("connect", () =>
    out({
      event: "connect",
      client: name,
      id: socket.id,
      nsp: socket.nsp,
      transport: socket.io.engine && socket.io.engine.transport ? socket.io.engine.transport.name : null,
    })
  );
  socket.on("connect_error", (err) =>
    out({
      event: "connect_error",
      client: name,
      message: err && err.message,
      data: err && err.data !== undefined ? enc(err.data) : null,
      active: socket.active,
    })
  );
  socket.on("disconnect", (reason, details) => {
    out({ event: "disconnect", client: name, reason, details: details ? String(details.description || details.message || details) : null });
  });
  socket.on("init", (data) => out({ event: "init", client: name, data: enc(data) }));
  socket.onAny((name_, ...a) => socket.seen.push({ name: name_, args: a }));
  sockets.push(socket);
  return socket;
}

function transportOf(socket) {
  const e = socket.io.engine;
  return e && e.transport ? e.transport.name : null;
}

// Resolves with the arguments of the next `event` on `socket`, rejects after `ms`.
function next(socket, event, ms = 5000) {
  waitingFor = `${socket.label}: ${event}`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`${socket.label} did not get "${event}" within ${ms} ms`));
    }, ms);
    function handler(...a) {
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(a);
    }
    socket.on(event, handler);
  });
}

function connected(socket, ms = 5000) {
  if (socket.connected) return Promise.resolve();
  waitingFor = `${socket.label}: connect`;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${socket.label} did not connect within ${ms} ms`)), ms);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      reject(new Error(`${socket.label} connect_error: ${err && err.message}`));
    });
  });
}

// An emit with an ack callback (all ack arguments), bounded.
function call(socket, event, ...a) {
  waitingFor = `${socket.label}: ack of ${event}`;
  return new Promise((resolve, reject) => {
    socket.timeout(5000).emit(event, ...a, (err, ...reply) => {
      if (err) reject(new Error(`${socket.label}: no ack for "${event}": ${err.message}`));
      else resolve(reply);
    });
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function untilUpgraded(socket, ms = 5000) {
  const deadline = Date.now() + ms;
  while (transportOf(socket) !== "websocket") {
    if (Date.now() > deadline) throw new Error(`${socket.label} did not upgrade within ${ms} ms`);
    waitingFor = `${socket.label}: upgrade`;
    await sleep(20);
  }
  out({ event: "upgrade", client: socket.label, transport: transportOf(socket) });
}

// ------------------------------------------------------------------------------------------
// Scenarios

const BIN_PAYLOAD = () => ({
  text: "héllo",
  blob: Buffer.from([0, 1, 2, 253, 254, 255]),
  nested: { list: [1, Buffer.from("nested bytes"), { deeper: Buffer.alloc(0) }], flag: true },
});

async function echoRound(s, tag) {
  const sent = [tag, 42, { nested: ["x", null, 1.5] }];
  const got = next(s, "echo");
  s.emit("echo", ...sent);
  const back = await got;
  out({ event: "echo", client: s.label, sent: enc(sent), got: enc(back), transport: transportOf(s) });
  const reply = await call(s, "echo-ack", tag, "second");
  out({ event: "ack", client: s.label, name: "echo-ack", args: enc(reply), transport: transportOf(s) });
}

const scenarios = {
  // Connect (with --auth, on --namespace), the "init" event, echo and ack, then (with
  // --transports both) wait for the upgrade and do it all again over WebSocket, then disconnect.
  async basic() {
    const s = client("A", { nsp: args.namespace, auth: args.auth });
    const init = next(s, "init");
    await connected(s);
    await init;
    await echoRound(s, "first");
    if (args.transports === "both") {
      await untilUpgraded(s);
      await echoRound(s, "after-upgrade");
    }
    const transport = transportOf(s);
    s.disconnect();
    out({ event: "done", transport, id: s.id === undefined ? null : s.id });
  },

  // The middleware refuses {token: "bad"}: connect_error with message and data, no connect.
  async refused() {
    const s = client("A", { nsp: args.namespace, auth: { token: "bad" } });
    const [err] = await next(s, "connect_error");
    await sleep(100); // a "connect" right after would be a bug: give it a chance to show
    out({ event: "done", connected: s.connected, message: err.message });
    s.disconnect();
  },

  // A namespace the server does not have.
  async "invalid-namespace"() {
    const s = client("A", { nsp: "/no-such-namespace" });
    await next(s, "connect_error");
    out({ event: "done", connected: s.connected });
    s.disconnect();
  },

  // Acks both ways, including a server-side emit_with_ack that times out.
  async acks() {
    const s = client("A", { auth: args.auth });
    await connected(s);
    // client -> server: the handler's return value (a tuple: several arguments).
    const r1 = await call(s, "echo-ack", "one", 2, { three: [3] });
    out({ event: "ack", client: "A", name: "echo-ack", args: enc(r1) });
    const r2 = await s.timeout(5000).emitWithAck("echo-ack", "single");
    out({ event: "ack", client: "A", name: "echo-ack-promise", args: enc([r2]) });
    // server -> client: the server asks, the client's callback answers.
    s.on("question", (a, b, cb) => cb({ answer: [a, b], from: "A" }));
    const r3 = await call(s, "ask", { event: "question", args: ["what", 7], timeout: 5 });
    out({ event: "ack", client: "A", name: "ask", args: enc(r3) });
    // server -> client, the client answers with several arguments (binary among them).
    s.on("question2", (cb) => cb("two", Buffer.from([0xbe, 0xef]), { three: 3 }));
    const r3b = await call(s, "ask", { event: "question2", args: [], timeout: 5 });
    out({ event: "ack", client: "A", name: "ask-several", args: enc(r3b) });
    // server -> client, the client never answers: the server's emit_with_ack times out.
    s.on("silent", () => out({ event: "got", client: "A", name: "silent" }));
    const r4 = await call(s, "ask", { event: "silent", args: [], timeout: 0.3 });
    out({ event: "ack", client: "A", name: "ask-silent", args: enc(r4) });
    // still usable afterwards
    const r5 = await call(s, "echo-ack", "still-alive");
    out({ event: "ack", client: "A", name: "after", args: enc(r5) });
    s.disconnect();
    out({ event: "done" });
  },

  // Binary both ways: nested Buffers in an event, an ack with binary, a server ask with binary.
  async binary() {
    const s = client("A", { auth: args.auth });
    await connected(s);
    const sent = BIN_PAYLOAD();
    const got = next(s, "echo");
    s.emit("echo", sent, Buffer.from("second arg"));
    const back = await got;
    out({ event: "echo", client: "A", sent: enc([sent, Buffer.from("second arg")]), got: enc(back) });
    const r1 = await call(s, "echo-ack", Buffer.from([9, 8, 7]), { b: Buffer.from("ack me") });
    out({ event: "ack", client: "A", name: "echo-ack", args: enc(r1) });
    s.on("bin-question", (q, cb) => cb({ youSent: q, mine: Buffer.from([0xca, 0xfe]) }));
    const r2 = await call(s, "ask", { event: "bin-question", args: [Buffer.from([1, 2, 3])], timeout: 5 });
    out({ event: "ack", client: "A", name: "ask", args: enc(r2) });
    if (args.transports === "both") {
      await untilUpgraded(s);
      const got2 = next(s, "echo");
      s.emit("echo", sent);
      out({ event: "echo", client: "A", sent: enc([sent]), got: enc(await got2), transport: transportOf(s) });
    }
    s.disconnect();
    out({ event: "done" });
  },

  // "/" and "/chat" on one Manager (one Engine.IO connection), plus a dynamic namespace; a
  // broadcast in /chat is not seen in "/".
  async namespaces() {
    const manager = new Manager(args.url, {
      transports: transportsOption(),
      upgrade: args.transports === "both",
      reconnection: false,
      timeout: 5000,
    });
    const main = client("main", { manager, nsp: "/", auth: { token: "main" } });
    const chat = client("chat", { manager, nsp: "/chat", auth: { token: "chat" } });
    const dyn = client("dyn", { nsp: "/dyn-42", auth: { token: "dyn" } });
    const inits = [next(main, "init"), next(chat, "init"), next(dyn, "init")];
    await Promise.all([connected(main), connected(chat), connected(dyn)]);
    await Promise.all(inits);
    out({ event: "step", name: "engines", same: main.io.engine === chat.io.engine, dynSeparate: dyn.io.engine !== main.io.engine });
    for (const s of [main, chat, dyn]) await echoRound(s, `in ${s.nsp}`);
    // A namespace-wide emit in /chat, fenced: "/" must not see it.
    const fenceMain = next(main, "fence");
    await call(chat, "broadcast", { form: "all", event: "bcast", data: "chat-only" });
    await call(main, "fence", 1);
    await fenceMain;
    out({
      event: "step",
      name: "isolation",
      main: main.seen.filter((e) => e.name === "bcast").map((e) => enc(e.args)),
      chat: chat.seen.filter((e) => e.name === "bcast").map((e) => enc(e.args)),
    });
    chat.disconnect(); // leaving /chat keeps "/" on the same connection
    const r = await call(main, "echo-ack", "main still here");
    out({ event: "ack", client: "main", name: "after-chat-left", args: enc(r) });
    main.disconnect();
    dyn.disconnect();
    out({ event: "done" });
  },

  // Rooms and every broadcast form, with three clients in one process. After each form the
  // sender waits for the "broadcast" ack (the server has enqueued everything) and then sends a
  // "fence" to everyone; each connection delivers in order, so once every client has its fence
  // it has everything that form sent it.
  async rooms() {
    const names = ["A", "B", "C"];
    const c = {};
    for (const n of names) c[n] = client(n, { auth: { token: n } });
    await Promise.all(names.map((n) => connected(c[n])));
    const ids = Object.fromEntries(names.map((n) => [n, c[n].id]));
    out({ event: "step", name: "ids", ids });
    const rooms = {};
    rooms.A = await call(c.A, "join", "r1");
    await call(c.B, "join", "r1");
    rooms.B = await call(c.B, "join", "r2");
    rooms.C = await call(c.C, "join", "r2");
    out({ event: "step", name: "rooms", rooms: Object.fromEntries(names.map((n) => [n, rooms[n][0]])) });
    const members = {};
    for (const r of ["r1", "r2"]) members[r] = (await call(c.A, "fetch-room", r))[0];
    out({ event: "step", name: "fetch-room", members });

    let fenceNo = 0;
    async function form(label, sender, spec) {
      for (const n of names) c[n].seen = [];
      const reply = await call(c[sender], "broadcast", { event: "bcast", data: label, ...spec });
      fenceNo += 1;
      const fences = names.map((n) => next(c[n], "fence"));
      await call(c[sender], "fence", fenceNo);
      await Promise.all(fences);
      const received = {};
      for (const n of names) received[n] = c[n].seen.filter((e) => e.name === "bcast").map((e) => enc(e.args));
      out({ event: "form", form: label, sender, reply: enc(reply), received });
    }

    await form("all", "A", { form: "all" });
    await form("broadcast", "A", { form: "broadcast" });
    await form("to-r1", "C", { form: "to", rooms: ["r1"] });
    await form("to-r1-r2-chained", "A", { form: "to-chained", rooms: ["r1", "r2"] });
    await form("to-r1-r2-list", "C", { form: "to", rooms: ["r1", "r2"] });
    await form("to-r2-except-r1", "A", { form: "to-except", rooms: ["r2"], except: ["r1"] });
    await form("except-r2", "A", { form: "except", except: ["r2"] });
    await form("socket-to-r1", "A", { form: "socket-to", rooms: ["r1"] });
    await form("socket-to-r2", "A", { form: "socket-to", rooms: ["r2"] });
    await form("socket-to-r1-r2", "B", { form: "socket-to", rooms: ["r1", "r2"] });
    await form("socket-broadcast-except-r2", "B", { form: "socket-broadcast-except", except: ["r2"] });
    await form("to-own-id", "A", { form: "to", rooms: [ids.B] });
    await form("volatile", "A", { form: "volatile" });
    await form("compress-false", "A", { form: "compress-false" });
    await form("local", "A", { form: "local" });
    await form("binary-to-r2", "A", { form: "to-binary", rooms: ["r2"] });
    out({ event: "step", name: "leave", rooms: (await call(c.B, "leave", "r1"))[0] });
    await form("to-r1-after-leave", "C", { form: "to", rooms: ["r1"] });
    for (const n of names) c[n].disconnect();
    out({ event: "done" });
  },

  // sio.to(room).timeout(t).emit_with_ack: every client answers; then one stays silent.
  async "room-acks"() {
    const names = ["A", "B", "C"];
    const c = {};
    const silent = new Set();
    for (const n of names) {
      c[n] = client(n, { auth: { token: n } });
      c[n].on("poll", (data, cb) => {
        out({ event: "got", client: n, name: "poll", args: enc([data]) });
        if (!silent.has(n)) cb({ from: n, data });
      });
    }
    await Promise.all(names.map((n) => connected(c[n])));
    for (const n of names) await call(c[n], "join", "ackroom");
    const r1 = await call(c.A, "ask-room", { room: "ackroom", event: "poll", data: "q1", timeout: 5 });
    out({ event: "ack", client: "A", name: "ask-room-all", args: enc(r1) });
    silent.add("C");
    const r2 = await call(c.A, "ask-room", { room: "ackroom", event: "poll", data: "q2", timeout: 0.5 });
    out({ event: "ack", client: "A", name: "ask-room-one-silent", args: enc(r2) });
    const r3 = await call(c.B, "echo-ack", "still-alive");
    out({ event: "ack", client: "B", name: "after", args: enc(r3) });
    for (const n of names) c[n].disconnect();
    out({ event: "done" });
  },

  // Volatile events from the server and from the client do not break the session.
  async volatile() {
    const s = client("A", { auth: args.auth });
    await connected(s);
    const after = next(s, "after-volatile");
    await call(s, "volatile", 20);
    await after;
    const vols = s.seen.filter((e) => e.name === "vol").map((e) => e.args[0]);
    s.volatile.emit("echo", "volatile from client");
    const r = await call(s, "echo-ack", "after volatile");
    out({ event: "ack", client: "A", name: "after", args: enc(r) });
    out({ event: "done", volatileReceived: vols, transport: transportOf(s) });
    s.disconnect();
  },

  // The handshake as the server saw it (query, a custom header, address), per-packet
  // middleware (socket.use), the catch-all handler (socket.on_any into socket.data), a handler
  // that raises while the client waits for its ack.
  async extras() {
    const s = io(args.url, {
      forceNew: true,
      reconnection: false,
      transports: transportsOption(),
      upgrade: args.transports === "both",
      auth: { token: "extras" },
      query: { q: "v", n: "1" },
      extraHeaders: { "x-test": "interop" },
    });
    s.label = "A";
    s.seen = [];
    s.onAny((n, ...a) => s.seen.push({ name: n, args: a }));
    sockets.push(s);
    await connected(s);
    out({ event: "connect", client: "A", id: s.id, nsp: s.nsp, transport: transportOf(s) });
    out({ event: "ack", client: "A", name: "handshake", args: enc(await call(s, "handshake")) });
    out({ event: "ack", client: "A", name: "forbidden", args: enc(await call(s, "forbidden", 1)) });
    s.emit("forbidden", "no ack"); // refused by the middleware: nothing comes back
    out({ event: "ack", client: "A", name: "boom", args: enc(await call(s, "boom")) });
    out({ event: "ack", client: "A", name: "whoami", args: enc(await call(s, "whoami")) });
    out({ event: "done", others: s.seen.filter((e) => e.name !== "init").map((e) => enc(e)) });
    s.disconnect();
  },

  // Many acks in flight at once: each reply reaches its own callback.
  async "parallel-acks"() {
    const s = client("A", { auth: args.auth });
    await connected(s);
    const n = 100;
    const replies = await Promise.all(
      Array.from({ length: n }, (_, i) => call(s, "echo-ack", i, i % 3 === 0 ? Buffer.from([i]) : `v${i}`))
    );
    const wrong = replies.map((r, i) => [i, enc(r)]).filter(([i, r]) => r[0] !== i);
    out({ event: "done", count: replies.length, wrong, sample: enc(replies.slice(0, 4)) });
    s.disconnect();
  },

  // A task in a room's nursery: it ticks to the room and ends when the room empties.
  async "room-tasks"() {
    const a = client("A", { auth: { token: "A" } });
    const bb = client("B", { auth: { token: "B" } });
    await Promise.all([connected(a), connected(bb)]);
    const room = args.auth.room || "game";
    await call(a, "join", room);
    await call(bb, "join", room);
    await call(a, "start-ticker", room);
    for (let i = 0; i < 3; i++) await Promise.all([next(a, "tick"), next(bb, "tick")]);
    out({ event: "step", name: "ticking", A: a.seen.filter((e) => e.name === "tick").length, B: bb.seen.filter((e) => e.name === "tick").length });
    await call(a, "leave", room);
    await next(bb, "tick"); // still one member: still ticking
    out({ event: "step", name: "one-left" });
    await call(bb, "leave", room);
    out({ event: "ack", client: "B", name: "after", args: enc(await call(bb, "echo-ack", "left")) });
    a.disconnect();
    bb.disconnect();
    out({ event: "done" });
  },

  // sockets_join / sockets_leave / disconnect_sockets on a room, from the server.
  async "server-ops"() {
    const names = ["A", "B", "C"];
    const c = {};
    for (const n of names) c[n] = client(n, { auth: { token: n } });
    await Promise.all(names.map((n) => connected(c[n])));
    await call(c.A, "join", "g");
    await call(c.B, "join", "g");
    await call(c.C, "sockets-join", { room: "g", new: "h" });
    const inH = (await call(c.C, "fetch-room", "h"))[0];
    out({ event: "step", name: "h-after-join", ids: inH, expect: [c.A.id, c.B.id].sort() });
    await call(c.C, "sockets-leave", { room: "g", old: "h" });
    out({ event: "step", name: "h-after-leave", ids: (await call(c.C, "fetch-room", "h"))[0] });
    const gone = [next(c.A, "disconnect"), next(c.B, "disconnect")];
    await call(c.C, "disconnect-room", { room: "g" });
    const reasons = (await Promise.all(gone)).map((a) => a[0]);
    out({ event: "step", name: "disconnected", reasons, A: c.A.connected, B: c.B.connected, C: c.C.connected });
    out({ event: "ack", client: "C", name: "after", args: enc(await call(c.C, "echo-ack", "C stays")) });
    c.C.disconnect();
    out({ event: "done" });
  },

  // A quiet connection over many ping intervals (the server's fast heartbeat): still connected,
  // same Engine.IO session, then still answering.
  async heartbeat() {
    const s = client("A", { auth: args.auth });
    let pings = 0;
    await connected(s);
    s.io.engine.on("ping", () => (pings += 1));
    const engineId = s.io.engine.id;
    await sleep(1500);
    const r = await call(s, "echo-ack", "awake");
    out({ event: "done", pings, sameEngine: s.io.engine.id === engineId, connected: s.connected, reply: enc(r) });
    s.disconnect();
  },

  // The client stops answering pings (its outgoing pongs are dropped, a private hook of
  // engine.io-client 6.x): the server must end the session ("ping timeout" on its side).
  async "no-pong"() {
    const s = client("A", { auth: args.auth });
    await connected(s);
    const engine = s.io.engine;
    if (typeof engine._sendPacket !== "function") throw new Error("engine.io-client has no _sendPacket");
    const original = engine._sendPacket.bind(engine);
    let dropped = 0;
    engine._sendPacket = (type, ...rest) => {
      if (type === "pong") {
        dropped += 1;
        return;
      }
      return original(type, ...rest);
    };
    out({ event: "ready", id: s.id });
    const [reason] = await next(s, "disconnect", 10000);
    out({ event: "done", reason, dropped });
  },

  // An Engine.IO connection that never joins a namespace: the server closes it (connect_timeout).
  async "connect-timeout"() {
    const manager = new Manager(args.url, { transports: transportsOption(), autoConnect: false, reconnection: false });
    const closed = new Promise((resolve) => manager.on("close", (reason) => resolve(reason)));
    manager.open((err) => out({ event: "open", error: err ? String(err.message || err) : null }));
    waitingFor = "the server to close the engine";
    const reason = await closed;
    out({ event: "done", reason });
  },

  // Events over the rate limit are refused with an error the client sees; a client that keeps
  // flooding is disconnected; a new client is then served normally.
  async "rate-limit"() {
    const s = client("A", { auth: args.auth });
    await connected(s);
    const burst = await Promise.all(Array.from({ length: 40 }, (_, i) => call(s, "echo-ack", i).catch((e) => ["no-ack"])));
    out({ event: "step", name: "burst", replies: enc(burst) });
    const errors = [];
    s.on("error", (e) => errors.push(enc(e)));
    const gone = next(s, "disconnect", 8000);
    const flood = setInterval(() => {
      for (let i = 0; i < 20; i++) s.emit("echo", i);
    }, 20);
    let reason;
    try {
      [reason] = await gone;
    } finally {
      clearInterval(flood);
    }
    out({ event: "step", name: "flooded", reason, errors: errors.slice(0, 3), errorCount: errors.length });
    const fresh = client("B", { auth: args.auth });
    await connected(fresh);
    out({ event: "ack", client: "B", name: "after", args: enc(await call(fresh, "echo-ack", "fresh")) });
    fresh.disconnect();
    out({ event: "done" });
  },

  // Large text and binary payloads (below max_http_buffer_size), echoed and acked.
  async large() {
    const s = client("A", { auth: args.auth });
    await connected(s);
    const size = 300000;
    const bin = Buffer.alloc(size);
    for (let i = 0; i < size; i++) bin[i] = (i * 31 + 7) & 0xff;
    const text = "é漢x".repeat(size / 10);
    const got = next(s, "echo", 15000);
    s.emit("echo", { bin, text });
    const [back] = await got;
    const ok1 = Buffer.isBuffer(back.bin) && back.bin.equals(bin) && back.text === text;
    const [ackBin] = await call(s, "echo-ack", bin);
    const ok2 = Buffer.isBuffer(ackBin) && ackBin.equals(bin);
    out({ event: "done", echoOk: ok1, ackOk: ok2, transport: transportOf(s) });
    s.disconnect();
  },

  // Traffic both ways while the transport upgrades: a server burst and many client acks start
  // right after connect (the upgrade is under way), then more after it. Nothing lost,
  // duplicated or reordered.
  async "upgrade-burst"() {
    const s = client("A", { auth: args.auth });
    const seq = [];
    let badBinary = 0;
    s.on("seq", (i, bin) => {
      seq.push(i);
      const want = i % 5 ? undefined : Buffer.alloc(3, i % 256);
      if (want === undefined ? bin !== undefined : !(Buffer.isBuffer(bin) && bin.equals(want))) badBinary += 1;
    });
    await connected(s);
    const startTransport = transportOf(s);
    // Below the server's max_pending_events (256): over polling the whole lot arrives in one
    // POST and queues at once; past that limit events are refused by design.
    const n = 200;
    const acked = Promise.all(Array.from({ length: n }, (_, i) => call(s, "echo-ack", i)));
    const burst = call(s, "burst", n);
    const replies = await acked;
    await burst;
    if (args.transports === "both") await untilUpgraded(s);
    await call(s, "burst", n);
    const fence = next(s, "fence");
    await call(s, "fence", 1);
    await fence;
    const expected = [...Array(n).keys(), ...Array(n).keys()];
    const seqOk = seq.length === expected.length && seq.every((v, i) => v === expected[i]);
    const wrong = replies.map((r, i) => [i, r]).filter(([i, r]) => r.length !== 1 || r[0] !== i);
    out({ event: "done", startTransport, transport: transportOf(s), seqOk, badBinary, seqCount: seq.length, wrongAcks: wrong.length, wrongSample: enc(wrong.slice(0, 3)), seqHead: seq.slice(0, 5) });
    s.disconnect();
  },

  // The server waits for an ack (without timeout) from a client that leaves instead: the wait
  // must end (SocketDisconnected); a room-wide wait ends when a silent member leaves.
  async "leave-while-asked"() {
    const a = client("A", { auth: { token: "A" } });
    const bb = client("B", { auth: { token: "B" } });
    await Promise.all([connected(a), connected(bb)]);
    const room = args.auth.tag + "-room";
    await call(a, "join", room);
    await call(bb, "join", room);
    // (B's handlers run one at a time on our server: B's later events would wait behind this.)
    const held = next(bb, "hold");
    bb.emit("ask", { event: "hold", args: [], tag: args.auth.tag + "-socket" });
    await held; // the server is now waiting for B's answer
    a.on("poll", (d, cb) => cb({ from: "A" }));
    bb.on("poll", () => {
      out({ event: "got", client: "B", name: "poll" });
      setTimeout(() => bb.disconnect(), 50); // silent, then gone
    });
    waitingFor = "the room ack to end after B left";
    const reply = await new Promise((resolve, reject) => {
      a.timeout(15000).emit("ask-room", { room, event: "poll", data: "q", timeout: 30, tag: room }, (err, r) =>
        err ? reject(new Error("no answer to ask-room 15 s after B left")) : resolve(r)
      );
    });
    out({ event: "ack", client: "A", name: "ask-room", args: enc([reply]) });
    a.disconnect();
    out({ event: "done" });
  },

  // On one Manager: "/" accepted, "/chat" refused by its middleware, then "/chat" accepted
  // (the same client socket, retrying with a good token).
  async "mixed-namespaces"() {
    const manager = new Manager(args.url, {
      transports: transportsOption(),
      upgrade: args.transports === "both",
      reconnection: false,
      timeout: 5000,
    });
    const main = client("main", { manager, nsp: "/", auth: { token: "main" } });
    const bad = client("bad", { manager, nsp: "/chat", auth: { token: "bad" } });
    const refused = next(bad, "connect_error");
    await connected(main);
    const [err] = await refused;
    out({ event: "step", name: "refused", message: err.message, data: enc(err.data) });
    out({ event: "ack", client: "main", name: "main-after-refusal", args: enc(await call(main, "echo-ack", "ok")) });
    // The Manager keeps one socket per namespace: the same socket retries with better auth.
    const good = bad;
    good.label = "good";
    good.auth = { token: "good" };
    good.connect();
    await connected(good);
    out({ event: "ack", client: "good", name: "chat", args: enc(await call(good, "echo-ack", "chat ok")) });
    out({ event: "step", name: "engines", same: main.io.engine === good.io.engine });
    good.disconnect();
    main.disconnect();
    out({ event: "done" });
  },

  // A broadcast from a dynamic namespace's parent reaches every child namespace, not "/".
  async "dyn-parent"() {
    const c = {
      one: client("one", { nsp: "/dyn-1" }),
      two: client("two", { nsp: "/dyn-2" }),
      main: client("main", { nsp: "/" }),
    };
    await Promise.all(Object.values(c).map((s) => connected(s)));
    for (const s of Object.values(c)) await call(s, "join", "r");
    await call(c.two, "leave", "r"); // /dyn-2 not in r
    for (const s of Object.values(c)) s.seen = [];
    async function fenceAll() {
      const f = Object.values(c).map((s) => next(s, "fence"));
      await Promise.all(Object.values(c).map((s) => call(s, "fence", 1)));
      await Promise.all(f);
    }
    const n1 = await call(c.one, "parent-broadcast", { event: "pb", data: "all-children" });
    const n2 = await call(c.one, "parent-broadcast", { room: "r", event: "pb", data: "room-r" });
    await fenceAll();
    const got = {};
    for (const [k, s] of Object.entries(c)) got[k] = s.seen.filter((e) => e.name === "pb").map((e) => e.args[0]);
    out({ event: "done", got, counts: [n1[0], n2[0]] });
    for (const s of Object.values(c)) s.disconnect();
  },

  // Many clients on mixed transports (polling, websocket, and upgraded) in one room: text and
  // binary broadcasts (encoded once by the server) reach each exactly once, in order.
  async crowd() {
    const n = 30;
    const kinds = ["polling", "websocket", "both"];
    const members = [];
    for (let i = 0; i < n; i++) {
      const kind = kinds[i % 3];
      const s = io(args.url, {
        forceNew: true,
        reconnection: false,
        transports: kind === "both" ? ["polling", "websocket"] : [kind],
        upgrade: kind === "both",
        auth: { token: `crowd-${i}` },
      });
      s.label = `c${i}`;
      s.kind = kind;
      s.got = [];
      s.on("crowd", (k, bin) => s.got.push([k, Buffer.isBuffer(bin) ? bin.toString("hex") : null]));
      sockets.push(s);
      members.push(s);
    }
    await Promise.all(members.map((s) => connected(s)));
    await Promise.all(members.map((s) => call(s, "join", "crowd")));
    const count = 20;
    const sender = members[0];
    for (let k = 0; k < count; k++) {
      const data = k % 2 ? `text-${k}` : `bin-${k}`;
      const spec = { event: "crowd", data, rooms: ["crowd"], form: k % 2 ? "to" : "to-binary" };
      await call(sender, "broadcast", spec);
    }
    const fences = members.map((s) => next(s, "fence", 10000));
    await call(sender, "fence", 1);
    await Promise.all(fences);
    const bad = [];
    for (const s of members) {
      const want = Array.from({ length: count }, (_, k) =>
        k % 2 ? [`text-${k}`, null] : [`bin-${k}`, Buffer.from(`bin:bin-${k}`).toString("hex")]
      );
      if (JSON.stringify(s.got) !== JSON.stringify(want)) bad.push({ client: s.label, kind: s.kind, got: s.got.slice(0, 4), count: s.got.length });
    }
    out({ event: "done", clients: n, bad, transports: members.map((s) => transportOf(s)) });
    for (const s of members) s.disconnect();
  },

  // The server calls socket.disconnect(): "io server disconnect", and no reconnection.
  async "server-disconnect"() {
    const s = client("A", { auth: args.auth, reconnection: true });
    await connected(s);
    const gone = next(s, "disconnect");
    s.emit("disconnect-me");
    const [reason] = await gone;
    await sleep(500); // a reconnection would start within reconnectionDelay (100 ms)
    out({ event: "done", reason, connected: s.connected, active: s.active });
    s.close();
  },

  // The client calls socket.disconnect(): the server sees "client namespace disconnect".
  async "client-disconnect"() {
    const s = client("A", { auth: args.auth, reconnection: true });
    await connected(s);
    const r = await call(s, "echo-ack", "hello");
    out({ event: "ack", client: "A", name: "echo-ack", args: enc(r) });
    const id = s.id;
    s.disconnect();
    out({ event: "done", id });
  },

  // Connection state recovery (the server runs with it on). A joins room r1 and gets one room
  // broadcast (so it has an offset). Its transport is cut (engine.close(), how the socket.io
  // docs simulate a drop). While A is away, B broadcasts to r1, to everyone, to A's id, to a
  // room A is not in, and a volatile packet. A connects again: the same socket comes back
  // (same id, recovered) and its listeners get what it missed, in order, before "connect".
  async recovery() {
    const a = client("A", { auth: args.auth });
    const b = client("B", { auth: args.auth });
    await Promise.all([connected(a), connected(b)]);
    const firstId = a.id;
    const joined = await call(a, "join", "r1");
    out({ event: "step", name: "first", id: firstId, recovered: a.recovered, rooms: joined });
    const before = next(a, "news");
    await call(b, "broadcast", { form: "to", rooms: ["r1"], event: "news", data: "before" });
    const [first, firstOffset] = await before;
    const order = [];
    a.on("news", (data, offset) => order.push({ data, offset: typeof offset }));
    a.on("connect", () => order.push({ connect: a.id, recovered: a.recovered }));
    const gone = next(a, "disconnect");
    a.io.engine.close();
    const [reason] = await gone;
    out({ event: "step", name: "away", reason, first, firstOffset: typeof firstOffset });
    // until the server has seen A go (its session is kept from then on)
    for (let i = 0; (await call(b, "fetch-room", "r1"))[0].includes(firstId); i++) {
      if (i > 200) throw new Error("the server did not see A go");
      await sleep(25);
    }
    for (const [form, rooms, data] of [
      ["to", ["r1"], "away-room"],
      ["all", [], "away-all"],
      ["to", [firstId], "away-direct"],
      ["to", ["elsewhere"], "not-for-a"],
      ["volatile", [], "volatile"],
    ]) {
      await call(b, "broadcast", { form, rooms, event: "news", data });
    }
    const back = next(a, "connect", 10000);
    a.connect();
    await back;
    const who = await call(a, "whoami");
    const rooms = await call(a, "join", "r2");
    const after = next(a, "news");
    await call(b, "broadcast", { form: "to", rooms: ["r1"], event: "news", data: "after" });
    await after;
    out({
      event: "done",
      id: a.id,
      firstId,
      recovered: a.recovered,
      order,
      who: enc(who[0]),
      rooms: rooms[0],
    });
    a.disconnect();
    b.disconnect();
  },

  // Connect, then wait (stdin-free: the test restarts the server meanwhile) until the Manager
  // reconnects by itself and a new "connect" arrives; prove the new session works.
  async reconnect() {
    const s = client("A", { auth: args.auth, reconnection: true });
    s.io.on("reconnect_attempt", (n) => out({ event: "reconnect_attempt", n }));
    s.io.on("reconnect", (n) => out({ event: "reconnect", n }));
    // "/chat" on the same Manager: the Manager reconnects every namespace it carries.
    const chat = client("chat", { manager: s.io, nsp: "/chat", auth: args.auth });
    await Promise.all([connected(s), connected(chat)]);
    const r1 = await call(s, "echo-ack", "before");
    out({ event: "ack", client: "A", name: "before", args: enc(r1) });
    out({ event: "ready", id: s.id, chatId: chat.id });
    const lost = [next(s, "disconnect", args.timeout), next(chat, "disconnect", args.timeout)];
    const [[reason]] = await Promise.all(lost);
    waitingFor = "reconnection";
    await Promise.all([next(s, "connect", args.timeout), next(chat, "connect", args.timeout)]);
    const r2 = await call(s, "echo-ack", "after");
    out({ event: "ack", client: "A", name: "after", args: enc(r2) });
    const r3 = await call(chat, "echo-ack", "chat after");
    out({ event: "ack", client: "chat", name: "chat-after", args: enc(r3) });
    out({ event: "done", reason, id: s.id, chatId: chat.id, transport: transportOf(s) });
    chat.disconnect();
    s.disconnect();
  },
};

async function main() {
  out({ event: "start", scenario: args.scenario, transports: args.transports });
  const fn = scenarios[args.scenario];
  if (!fn) throw new Error(`unknown scenario ${args.scenario}`);
  await fn();
}

const overall = setTimeout(() => {
  out({ event: "timeout", waiting_for: waitingFor });
  process.exit(2);
}, args.timeout);

main().then(
  () => {
    clearTimeout(overall);
    for (const s of sockets) s.close();
    // Let the close packets leave before exiting.
    setTimeout(() => process.exit(0), 100);
  },
  (err) => {
    out({ event: "exception", message: String(err && err.message), stack: String(err && err.stack) });
    for (const s of sockets) s.close();
    setTimeout(() => process.exit(1), 50);
  }
);
