// The official socket.io 4.8 server, for the tests of pyserver's Trio client
// (tests/interop/test_client_node_server.py). It listens on --port (0: a free one) and prints
// one JSON line {"event":"listening","port":N}, then one line per thing it saw.
//
// Options: --port N, --recovery (connectionStateRecovery on), --ping-interval ms,
// --ping-timeout ms, --transports polling,websocket, --parser msgpack (socket.io-msgpack-parser
// 3.x; the default is socket.io's own parser).
//
// The protocol, on "/" and on "/admin":
//   middleware      refuses auth {token: "bad"}: Error("Authentication error"), data {reason}
//   connection      emits "welcome" {id, nsp, auth, recovered}; prints "connection"
//   echo ...args    acks with the same arguments
//   echo-event ...  emits "echo" back with the same arguments
//   ask {event, args}  socket.timeout(5000).emitWithAck(event, ...args), acks {reply} or {error}
//   join room       joins, acks the rooms
//   handshake       acks {query, header (x-test)}
//   disconnect-me   socket.disconnect()
//   broadcast-when-gone {id, room, n}: waits until socket id is gone from the namespace, then
//                   emits "missed" i to room for i in 0..n-1, then acks n
//   burst n         emits "seq" i for i in 0..n-1 (every 3rd with a Buffer), acks n
"use strict";

const { Server } = require("socket.io");

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = process.argv[i + 1];
  return value === undefined || value.startsWith("--") ? true : value;
}

const port = Number(option("port", "0"));
const recovery = option("recovery", false) === true;
const parser = option("parser", "default");
const io = new Server({
  ...(parser === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {}),
  pingInterval: Number(option("ping-interval", "25000")),
  pingTimeout: Number(option("ping-timeout", "20000")),
  transports: String(option("transports", "polling,websocket")).split(","),
  maxHttpBufferSize: 1e6,
  connectionStateRecovery: recovery ? { maxDisconnectionDuration: 60000 } : undefined,
});

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function install(nsp) {
  nsp.use((socket, next) => {
    if (socket.handshake.auth && socket.handshake.auth.token === "bad") {
      const err = new Error("Authentication error");
      err.data = { reason: "bad token" };
      return next(err);
    }
    next();
  });
  nsp.on("connection", (socket) => {
    print({ event: "connection", nsp: nsp.name, id: socket.id, recovered: socket.recovered });
    socket.emit("welcome", {
      id: socket.id,
      nsp: nsp.name,
      auth: socket.handshake.auth,
      recovered: socket.recovered,
    });
    socket.on("echo", (...args) => {
      const ack = args.pop();
      ack(...args);
    });
    socket.on("echo-event", (...args) => socket.emit("echo", ...args));
    socket.on("ask", async (spec, ack) => {
      try {
        const reply = await socket.timeout(5000).emitWithAck(spec.event, ...(spec.args || []));
        ack({ reply });
      } catch (e) {
        ack({ error: String(e) });
      }
    });
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack([...socket.rooms].sort());
    });
    socket.on("handshake", (ack) => {
      ack({ query: socket.handshake.query, header: socket.handshake.headers["x-test"] || null });
    });
    socket.on("disconnect-me", () => socket.disconnect());
    socket.on("broadcast-when-gone", async (spec, ack) => {
      while (nsp.sockets.has(spec.id)) await new Promise((r) => setTimeout(r, 10));
      for (let i = 0; i < spec.n; i++) nsp.to(spec.room).emit("missed", i);
      ack(spec.n);
    });
    socket.on("burst", (n, ack) => {
      for (let i = 0; i < n; i++) {
        if (i % 3 === 0) socket.emit("seq", i, Buffer.from([i % 256, 1, 2]));
        else socket.emit("seq", i);
      }
      ack(n);
    });
    socket.on("disconnect", (reason) => print({ event: "disconnect", id: socket.id, reason }));
  });
}

install(io.of("/"));
install(io.of("/admin"));

io.listen(port);
const server = io.httpServer;
server.on("listening", () => print({ event: "listening", port: server.address().port }));
process.on("SIGTERM", () => process.exit(0));
