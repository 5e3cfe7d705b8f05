#!/usr/bin/env node
// Drives the official `engine.io-client` package against an Engine.IO v4 server and prints,
// one JSON object per line on stdout, what it observed. The Python tests (test_engineio_client.py)
// assert on these lines; this script only observes and never decides pass/fail itself, except
// for exiting non-zero on its own timeout or on an unexpected exception.
//
// Usage:
//   node eio_client.js --url http://127.0.0.1:PORT [--path /engine.io]
//        --transports polling|websocket|both [--polling xhr|fetch]
//        --mode echo|large|burst|heartbeat|server-close|upgrade
//        [--size N] [--count N] [--duration MS] [--trigger TEXT] [--timeout MS]
//
// Every server is expected to echo each message back unchanged (same type, same bytes).
//
// Lines printed (field "event"):
//   start      {transports, mode}
//   handshake  {sid, upgrades, pingInterval, pingTimeout, maxPayload}
//   open       {transport, extensions}   (extensions: what `ws` agreed, on WebSocket only)
//   upgrading  {transport}    upgrade {transport, socketTransport, extensions}
//   upgradeError {message}
//   sent       {kind, length, sha256, preview, transport}
//   message    {kind, length, sha256, preview, transport}
//   ping       {transport, t}        (t = ms since start)
//   error      {message}
//   close      {reason, description, transport}
//   done       {transport, extensions, received, sent, pings, upgraded}
//   timeout    {waiting_for}
"use strict";

const crypto = require("crypto");
const path = require("path");
const eio = require(path.join(__dirname, "node_modules", "engine.io-client"));

function parseArgs(argv) {
  const out = {
    url: null,
    path: "/engine.io",
    transports: "both",
    polling: "xhr",
    mode: "echo",
    size: 1024 * 1024,
    count: 500,
    duration: 1500,
    trigger: "close-me",
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
  return out;
}

const args = parseArgs(process.argv);
const started = Date.now();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function describe(data) {
  if (data === undefined) {
    // engine.io-parser decodes an empty message packet ("4") to `undefined`.
    return { kind: "undefined", length: 0, sha256: "", preview: "" };
  }
  if (typeof data === "string") {
    return {
      kind: "text",
      length: Buffer.byteLength(data, "utf8"),
      sha256: crypto.createHash("sha256").update(data, "utf8").digest("hex"),
      preview: data.slice(0, 64),
    };
  }
  let buf;
  if (Buffer.isBuffer(data)) buf = data;
  else if (data instanceof ArrayBuffer) buf = Buffer.from(data);
  else if (ArrayBuffer.isView(data)) buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  else return { kind: `unknown:${Object.prototype.toString.call(data)}`, length: -1, sha256: "", preview: "" };
  return {
    kind: "binary",
    length: buf.length,
    sha256: crypto.createHash("sha256").update(buf).digest("hex"),
    preview: buf.subarray(0, 32).toString("hex"),
  };
}

function transportsOption() {
  const pollingTransport = args.polling === "fetch" ? eio.Fetch : eio.NodeXHR;
  switch (args.transports) {
    case "polling":
      return [pollingTransport];
    case "websocket":
      return [eio.NodeWebSocket];
    case "both":
      return [pollingTransport, eio.NodeWebSocket];
    default:
      throw new Error(`bad --transports ${args.transports}`);
  }
}

emit({ event: "start", transports: args.transports, mode: args.mode, polling: args.polling });

const socket = new eio.Socket(args.url, {
  path: args.path,
  transports: transportsOption(),
  upgrade: args.transports === "both",
  // Keep the client's defaults otherwise (perMessageDeflate offered over websocket, threshold 1024).
});

const state = {
  received: [],
  sent: 0,
  pings: 0,
  upgraded: false,
  closed: false,
  waitingFor: "open",
};
let waiters = [];

function transportName() {
  return socket.transport ? socket.transport.name : null;
}

// The WebSocket extensions the `ws` package agreed with the server ("permessage-deflate" or "").
function wsExtensions() {
  const t = socket.transport;
  return t && t.name === "websocket" && t.ws ? t.ws.extensions : null;
}

function send(data) {
  const d = describe(data);
  emit({ event: "sent", ...d, transport: transportName() });
  state.sent += 1;
  socket.send(data);
}

// Resolves when `pred()` becomes true (checked after every event), rejects on close.
function until(label, pred) {
  if (pred()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    waiters.push({ label, pred, resolve, reject });
    state.waitingFor = label;
  });
}

function pump() {
  const still = [];
  for (const w of waiters) {
    if (w.pred()) w.resolve();
    else if (state.closed) w.reject(new Error(`closed while waiting for ${w.label}`));
    else still.push(w);
  }
  waiters = still;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

socket.on("handshake", (data) => {
  emit({
    event: "handshake",
    sid: data.sid,
    upgrades: data.upgrades,
    pingInterval: data.pingInterval,
    pingTimeout: data.pingTimeout,
    maxPayload: data.maxPayload,
  });
});
socket.on("open", () => {
  emit({ event: "open", transport: transportName(), extensions: wsExtensions() });
  state.opened = true;
  pump();
});
socket.on("upgrading", (t) => emit({ event: "upgrading", transport: t && t.name }));
socket.on("upgrade", (t) => {
  state.upgraded = true;
  emit({
    event: "upgrade",
    transport: t && t.name,
    socketTransport: transportName(),
    extensions: wsExtensions(),
  });
  pump();
});
socket.on("upgradeError", (err) => emit({ event: "upgradeError", message: String(err && err.message) }));
socket.on("message", (data) => {
  const d = describe(data);
  emit({ event: "message", ...d, transport: transportName() });
  state.received.push(d);
  pump();
});
socket.on("ping", () => {
  state.pings += 1;
  emit({ event: "ping", transport: transportName(), t: Date.now() - started });
  pump();
});
socket.on("error", (err) => emit({ event: "error", message: String(err && (err.message || err)) }));
socket.on("close", (reason, description) => {
  let desc = null;
  if (description) {
    if (description instanceof Error) desc = description.message;
    else if (typeof description === "object") {
      desc = {};
      for (const k of ["description", "context", "message", "type"]) {
        if (description[k] !== undefined) {
          const v = description[k];
          desc[k] = typeof v === "object" ? String(v && (v.message || v.code || v)) : v;
        }
      }
    } else desc = String(description);
  }
  emit({ event: "close", reason, description: desc, transport: transportName() });
  state.closed = true;
  pump();
});

function textOfSize(n) {
  // Deterministic text of exactly n UTF-16 code units: ASCII plus a few multibyte characters.
  const unit = "The quick brown fox jumps over the lazy dog 0123456789 \u00e9\u4e2d ";
  return unit.repeat(Math.ceil(n / unit.length) + 1).slice(0, n);
}

function binaryOfSize(n) {
  const buf = Buffer.alloc(n);
  for (let i = 0; i < n; i++) buf[i] = (i * 31 + 7) & 0xff;
  return buf;
}

async function expectEchoes(n) {
  const target = state.received.length + n;
  await until(`${n} echoes`, () => state.received.length >= target);
}

async function finish() {
  if (args.transports === "both") {
    // The scenario may finish over polling before the probe completes; the upgrade is part of
    // what "both" checks, so wait for it (or for the connection to end).
    await until("upgrade", () => state.upgraded || state.closed);
  }
  emit({
    event: "done",
    transport: transportName(),
    extensions: wsExtensions(),
    received: state.received.length,
    sent: state.sent,
    pings: state.pings,
    upgraded: state.upgraded,
  });
  if (!state.closed) {
    socket.close();
    await until("client close", () => state.closed);
  }
}

async function run() {
  await until("open", () => state.opened);
  switch (args.mode) {
    case "echo": {
      const msgs = [
        "hello",
        "h\u00e9llo w\u00f6rld \u2713 \ud83d\ude80",
        "bXhlbGxv", // text that looks like the polling base64 marker; must stay text
        "4not-a-packet",
        "",
        Buffer.from([0, 1, 2, 3, 254, 255]),
        binaryOfSize(256),
        Buffer.from([0x62]), // a single "b"
      ];
      for (const m of msgs) send(m);
      await expectEchoes(msgs.length);
      break;
    }
    case "large": {
      send(textOfSize(args.size));
      await expectEchoes(1);
      send(binaryOfSize(args.size));
      await expectEchoes(1);
      break;
    }
    case "burst": {
      for (let i = 0; i < args.count; i++) {
        if (i % 10 === 9) send(Buffer.from(`bin-${i}`));
        else send(`msg-${i}`);
      }
      await expectEchoes(args.count);
      break;
    }
    case "heartbeat": {
      const deadline = Date.now() + args.duration;
      state.waitingFor = "heartbeat duration";
      while (Date.now() < deadline && !state.closed) await sleep(Math.min(50, deadline - Date.now()));
      if (state.closed) break;
      send("still-alive");
      await expectEchoes(1);
      break;
    }
    case "server-close": {
      send(args.trigger);
      await until("server close", () => state.closed);
      break;
    }
    case "upgrade": {
      // Messages sent before the upgrade completes travel over polling (or are buffered while
      // the upgrade is in flight); those after go over the websocket. All must be echoed in order.
      const before = ["before-0", Buffer.from("before-1"), "before-2"];
      for (const m of before) send(m);
      await until("upgrade", () => state.upgraded);
      const after = ["after-0", Buffer.from("after-1"), "after-2"];
      for (const m of after) send(m);
      await until("all echoes", () => state.received.length >= before.length + after.length);
      break;
    }
    default:
      throw new Error(`unknown --mode ${args.mode}`);
  }
  await finish();
}

const timer = setTimeout(() => {
  emit({ event: "timeout", waiting_for: state.waitingFor });
  process.exit(2);
}, args.timeout);

run().then(
  () => {
    clearTimeout(timer);
    // Do not exit at once: the client's close packet (a POST on polling) may still be in
    // flight. Node exits by itself once nothing is pending; this bounds the wait.
    setTimeout(() => process.exit(0), 3000).unref();
  },
  (err) => {
    emit({ event: "exception", message: String(err && (err.stack || err)) });
    clearTimeout(timer);
    process.exit(3);
  }
);
