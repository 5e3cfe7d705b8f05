#!/usr/bin/env node
// Drives socket.io-client 2.5.0 (Engine.IO v3, Socket.IO protocol v4; installed under the npm
// alias socket.io-client-v2) against a pyserver Server(allow_eio3=True) running the small
// protocol of test_client_v2_node.py, and prints what the clients observed, one JSON object
// per line. The Python tests assert on these lines; this script only observes. It exits
// non-zero on its own timeout or on an exception.
//
// Usage: node sio_v2_client.js --url http://127.0.0.1:PORT --scenario NAME
//             [--transports polling|websocket|upgrade] [--wait MS] [--timeout MS] [--b64 1]
// (--b64 1: the v2 clients are made with forceBase64, so binary travels as base64 text)
//
// Scenarios:
//   basic      connect to "/" (query x=1), then: "echo-ack" with an ack, "echo" with binary,
//              "ask" (the server asks the client with an ack, binary in the answer), then
//              "/chat" with token "good" (init), "/chat" with token "bad" (refused by the
//              middleware), "/nope" (no such namespace); with --transports upgrade it waits
//              for the upgrade first
//   heartbeat  connect, stay quiet --wait MS, then "echo-ack" (still connected?)
//   room       a v2 client and a v4 client (socket.io-client 4.8.1) join room "r", then the
//              v2 client asks the server to broadcast ["text", <binary>] to "r"; then the v4
//              client has the server send "private" to the v2 client's own socket.id
//
// Binary values are printed as {"$bin": "<hex>"}.
// Lines: connect {client, nsp}  init {client, data}  ack {client, name, args}
//        got {client, name, args}  error {client, data}  upgrade {client, transport}
//        disconnect {client, reason}  done {}  timeout {}  exception {message}
"use strict";

const path = require("path");
const ioV2 = require(path.join(__dirname, "node_modules", "socket.io-client-v2"));
const { io: ioV4 } = require(path.join(__dirname, "node_modules", "socket.io-client"));

function parseArgs(argv) {
  const out = { url: null, scenario: "basic", transports: "upgrade", wait: 0, timeout: 20000, b64: "0" };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    out[key] = ["wait", "timeout"].includes(key) ? Number(argv[i + 1]) : argv[i + 1];
  }
  return out;
}

const args = parseArgs(process.argv);
const sockets = [];

function plain(value) {
  if (Buffer.isBuffer(value)) return { $bin: value.toString("hex") };
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("hex") };
  if (ArrayBuffer.isView(value)) {
    return { $bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("hex") };
  }
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

let finished = false;

function print(obj) {
  if (finished) return; // (the disconnects of closing the clients at the end)
  process.stdout.write(JSON.stringify(plain(obj)) + "\n");
}

function finish(code) {
  finished = true;
  for (const s of sockets) s.close();
  setTimeout(() => process.exit(code), 50);
}

function transportsOf(name) {
  if (name === "polling") return ["polling"];
  if (name === "websocket") return ["websocket"];
  return ["polling", "websocket"];
}

function v2(client, nsp, query) {
  const s = ioV2(args.url + nsp, {
    transports: transportsOf(args.transports),
    forceNew: true,
    reconnection: false,
    forceBase64: args.b64 === "1",
    query,
  });
  sockets.push(s);
  s.io.engine.on("upgrade", (t) => print({ event: "upgrade", client, transport: t.name }));
  s.on("connect", () => print({ event: "connect", client, nsp, id: s.id }));
  s.on("init", (data) => print({ event: "init", client, data }));
  s.on("error", (data) => print({ event: "error", client, data }));
  s.on("disconnect", (reason) => print({ event: "disconnect", client, reason }));
  return s;
}

function once(socket, name) {
  return new Promise((resolve) => socket.once(name, (...a) => resolve(a)));
}

function emitAck(client, socket, name, ...a) {
  return new Promise((resolve) =>
    socket.emit(name, ...a, (...reply) => {
      print({ event: "ack", client, name, args: reply });
      resolve(reply);
    }),
  );
}

async function waitUpgrade(client, socket) {
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") await once(engine, "upgrade");
}

async function basic() {
  const main = v2("A", "", { x: "1" });
  await once(main, "init");
  if (args.transports === "upgrade") await waitUpgrade("A", main);
  await emitAck("A", main, "echo-ack", "hi", 1, { k: [true, null] });
  main.emit("echo", "bin", Buffer.from([1, 2, 3, 255]), { nested: Buffer.from([0]) });
  const [...echoed] = await once(main, "echo");
  print({ event: "got", client: "A", name: "echo", args: echoed });
  main.once("question", (q, reply) => {
    print({ event: "got", client: "A", name: "question", args: [q] });
    reply("answer", Buffer.from([9, 8]));
  });
  main.emit("ask", "what?");
  const [answer] = await once(main, "answer");
  print({ event: "got", client: "A", name: "answer", args: [answer] });

  const chat = v2("B", "/chat", { token: "good" });
  await once(chat, "init");
  await emitAck("B", chat, "echo-ack", "in chat");
  const bad = v2("C", "/chat", { token: "bad" });
  await once(bad, "error");
  const nope = v2("D", "/nope", {});
  await once(nope, "error");
  print({ event: "done" });
  finish(0);
}

async function heartbeat() {
  const main = v2("A", "", {});
  await once(main, "init");
  await new Promise((r) => setTimeout(r, args.wait));
  await emitAck("A", main, "echo-ack", "still here");
  print({ event: "done", transport: main.io.engine.transport.name });
  finish(0);
}

async function room() {
  const old = v2("V2", "", {});
  await once(old, "init");
  const fresh = ioV4(args.url, {
    transports: transportsOf(args.transports),
    forceNew: true,
    reconnection: false,
  });
  sockets.push(fresh);
  await once(fresh, "init");
  for (const [client, s] of [["V2", old], ["V4", fresh]]) {
    s.on("shouted", (...a) => print({ event: "got", client, name: "shouted", args: a }));
  }
  await emitAck("V2", old, "join", "r");
  await emitAck("V4", fresh, "join", "r");
  const both = Promise.all([once(old, "shouted"), once(fresh, "shouted")]);
  old.emit("shout", "r", "text", Buffer.from([7, 7, 0, 7]));
  await both;
  // the v4 client writes to the v2 client by the id the v2 client gave itself
  const told = once(old, "told");
  fresh.emit("shout", old.id, "private");
  const [said] = await told;
  print({ event: "got", client: "V2", name: "told", args: [said] });
  print({ event: "done" });
  finish(0);
}

const scenarios = { basic, heartbeat, room };
setTimeout(() => {
  print({ event: "timeout" });
  finish(2);
}, args.timeout);
scenarios[args.scenario]().catch((e) => {
  print({ event: "exception", message: String(e && e.stack) });
  finish(1);
});
