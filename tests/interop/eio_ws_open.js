#!/usr/bin/env node
// Opens one Engine.IO session over WebSocket only with the official `engine.io-client`
// and prints, as JSON lines, what the upgrade answer carried: `upgrade {status, headers}`
// from the `ws` socket's "upgrade" event (the 101), or `refused {status, body}` from its
// "unexpected-response" event (an HTTP answer instead of the 101), then `open` or nothing.
// It observes only; the Python test (test_compress_node.py) decides.
//
// Usage: node eio_ws_open.js URL PATH [HEADER_NAME HEADER_VALUE]
"use strict";

const path = require("path");
const eio = require(path.join(__dirname, "node_modules", "engine.io-client"));

const [url, ioPath, name, value] = process.argv.slice(2);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const extraHeaders = name ? { [name]: value } : {};
const socket = new eio.Socket(url, { path: ioPath, transports: ["websocket"], extraHeaders });
const ws = socket.transport.ws; // the `ws` WebSocket, made synchronously by the transport
ws.on("upgrade", (res) => emit({ event: "upgrade", status: res.statusCode, headers: res.headers }));
ws.on("unexpected-response", (req, res) => {
  let body = "";
  res.on("data", (chunk) => (body += chunk));
  res.on("end", () => {
    emit({ event: "refused", status: res.statusCode, headers: res.headers, body });
    process.exit(0);
  });
});
socket.on("open", () => {
  emit({ event: "open", sid: socket.id });
  socket.close();
  process.exit(0);
});
setTimeout(() => {
  emit({ event: "timeout" });
  process.exit(1);
}, 10000);
