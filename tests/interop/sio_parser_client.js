// The official socket.io-client configured with socket.io-msgpack-parser (or the default
// parser), against pyserver's Server(parser="msgpack") (or Server(json=...)):
//
//   node sio_parser_client.js --url http://127.0.0.1:PORT --transports polling|websocket|both
//                             [--parser msgpack|json] [--timeout MS] [--scenario listen]
//
// One scenario, two clients ("a" and "b") on "/" and one on "/chat"; prints JSON lines
// (field "event"): connect {client, transport}, welcome {args}, ack {name, args},
// broadcast {client, args}, asked {args}, refused {message, data}, done. Binary is printed
// as {"$bin": hex}, a Date as {"$date": ISO string}.
"use strict";

const { io } = require("socket.io-client");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const url = arg("url");
const transportsArg = arg("transports", "websocket");
const parserName = arg("parser", "msgpack");
const timeout = Number(arg("timeout", "15000"));
const transports = transportsArg === "both" ? ["polling", "websocket"] : [transportsArg];
const parser = parserName === "msgpack" ? require("socket.io-msgpack-parser") : undefined;

function plain(value) {
  if (value instanceof Date) return { $date: value.toISOString() };
  if (Buffer.isBuffer(value)) return { $bin: value.toString("hex") };
  if (value instanceof ArrayBuffer) return { $bin: Buffer.from(value).toString("hex") };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

function out(obj) {
  process.stdout.write(JSON.stringify(plain(obj)) + "\n");
}

function connect(name, nsp, extra = {}) {
  const options = { transports, reconnection: false, forceNew: true, ...extra };
  if (parser) options.parser = parser;
  return io(url + nsp, options);
}

// every argument of the ack (emitWithAck resolves with the first one only)
function ackAll(socket, event, ...args) {
  return new Promise((resolve, reject) =>
    socket.timeout(5000).emit(event, ...args, (err, ...reply) => (err ? reject(err) : resolve(reply))),
  );
}

function once(socket, event) {
  return new Promise((resolve) => socket.once(event, (...args) => resolve(args)));
}

async function main() {
  const a = connect("a", "/");
  const b = connect("b", "/");
  a.on("asked", (n, callback) => {
    out({ event: "asked", args: [n] });
    callback({ got: n, bin: Buffer.from([9, 8]) });
  });
  const welcome = once(a, "welcome");
  await Promise.all([once(a, "connect"), once(b, "connect")]);
  out({ event: "connect", client: "a", transport: a.io.engine.transport.name });
  out({ event: "welcome", args: await welcome });

  const echoed = await ackAll(
    a,
    "echo",
    "hi",
    1.5,
    Buffer.from([1, 2, 3]),
    { nested: [Buffer.from([255]), null, true] },
    new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)),
  );
  out({ event: "ack", name: "echo", args: echoed });

  const seenB = once(b, "shout");
  const seenA = once(a, "shout");
  await a.timeout(5000).emitWithAck("shout", "to everyone", Buffer.from([7]));
  out({ event: "broadcast", client: "a", args: await seenA });
  out({ event: "broadcast", client: "b", args: await seenB });

  const ask = await a.timeout(5000).emitWithAck("ask");
  out({ event: "ack", name: "ask", args: [ask] });

  const chat = connect("chat", "/chat", { auth: { token: "letmein" } });
  await once(chat, "connect");
  const chatAck = await chat.timeout(5000).emitWithAck("where");
  out({ event: "ack", name: "where", args: [chatAck] });

  const refused = connect("refused", "/chat", { auth: { token: "nope" } });
  const [err] = await once(refused, "connect_error");
  out({ event: "refused", message: err.message, data: err.data });

  const gone = once(b, "disconnect");
  b.emit("bye");
  out({ event: "disconnect", client: "b", reason: (await gone)[0] });

  for (const s of [a, chat, refused]) s.disconnect();
  out({ event: "done" });
}

// --scenario listen: one client says "ready" and prints the next "news" (a broadcast made on
// another node of a cluster), then done
async function listen() {
  const socket = connect("listener", "/");
  await once(socket, "connect");
  const news = once(socket, "news");
  socket.emit("ready");
  out({ event: "news", args: await news });
  socket.disconnect();
  out({ event: "done" });
}

const timer = setTimeout(() => {
  out({ event: "timeout" });
  process.exit(2);
}, timeout);
(arg("scenario", "main") === "listen" ? listen() : main())
  .then(() => {
    clearTimeout(timer);
    process.exit(0);
  })
  .catch((e) => {
    out({ event: "exception", message: String(e && e.stack ? e.stack : e) });
    process.exit(1);
  });
