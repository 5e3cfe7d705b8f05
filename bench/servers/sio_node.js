#!/usr/bin/env node
// Socket.IO peer for bench/sio_bench.py: Node `socket.io` 4.8 (npm), defaults otherwise.
// Usage: node sio_node.js --port N
//   "echo": emits "echo" back to the sender with the same payload;
//   "ack":  acknowledges with the payload;
//   "bcast": broadcasts the payload as "bcast" to the room "b";
//   a client that connects with auth {room: "b"} joins the room "b".
// BENCH_SIO_PARSER=msgpack: the server uses `socket.io-msgpack-parser` (sio_bench.py's node-msgpack).
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const i = process.argv.indexOf('--port');
const port = i >= 0 ? Number(process.argv[i + 1]) : NaN;
if (!Number.isInteger(port)) {
  console.error('usage: node sio_node.js --port N');
  process.exit(2);
}

const httpServer = http.createServer();
// BENCH_SIO_RECOVERY=1 (sio_bench.py --recovery): connection state recovery on
const recovery = process.env.BENCH_SIO_RECOVERY === '1' ? { connectionStateRecovery: {} } : {};
const parser = process.env.BENCH_SIO_PARSER === 'msgpack' ? { parser: require('socket.io-msgpack-parser') } : {};
const io = new Server(httpServer, { serveClient: false, cors: { origin: '*' }, ...recovery, ...parser });
io.on('connection', (socket) => {
  const room = socket.handshake.auth && socket.handshake.auth.room;
  if (room) socket.join(room);
  socket.on('echo', (data) => socket.emit('echo', data));
  socket.on('ack', (data, cb) => { if (typeof cb === 'function') cb(data); });
  socket.on('bcast', (data) => io.to('b').emit('bcast', data));
});
httpServer.listen(port, '127.0.0.1', () => console.error(`node socket.io on 127.0.0.1:${port}`));
