#!/usr/bin/env node
// A Node socket.io node for bench/cluster_bench.py: the handlers of sio_node.js ("bcast"
// broadcasts to the room "b", which a client joins with auth {room: "b"}), with
// @socket.io/redis-adapter 8 (classic pub/sub, node-redis 4) on $BENCH_REDIS_URL when it is
// set ($BENCH_ADAPTER sharded: createShardedAdapter; streams: @socket.io/redis-streams-adapter),
// the in-memory adapter otherwise. The packages come from tests/cluster/node (npm ci there).
// Usage: node cluster_node.js --port N
'use strict';

const http = require('node:http');
const path = require('node:path');

const MODULES = path.join(__dirname, '..', '..', 'tests', 'cluster', 'node', 'node_modules');
const mod = (name) => require(path.join(MODULES, name));
const { Server } = mod('socket.io');

const i = process.argv.indexOf('--port');
const port = i >= 0 ? Number(process.argv[i + 1]) : NaN;
if (!Number.isInteger(port)) {
  console.error('usage: node cluster_node.js --port N');
  process.exit(2);
}

async function main() {
  const options = { serveClient: false, cors: { origin: '*' } };
  const redisUrl = process.env.BENCH_REDIS_URL;
  if (redisUrl) {
    const { createAdapter } = mod('@socket.io/redis-adapter');
    const { createClient } = mod('redis');
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    pub.on('error', (err) => console.error(`redis: ${err.message}`));
    sub.on('error', (err) => console.error(`redis: ${err.message}`));
    await Promise.all([pub.connect(), sub.connect()]);
    const kind = process.env.BENCH_ADAPTER || 'classic';
    if (kind === 'sharded') {
      options.adapter = mod('@socket.io/redis-adapter').createShardedAdapter(pub, sub);
    } else if (kind === 'streams') {
      options.adapter = mod('@socket.io/redis-streams-adapter').createAdapter(pub);
      if (process.env.BENCH_RECOVERY) options.connectionStateRecovery = {};
    } else {
      options.adapter = createAdapter(pub, sub);
    }
  }
  const httpServer = http.createServer();
  const io = new Server(httpServer, options);
  io.on('connection', (socket) => {
    const room = socket.handshake.auth && socket.handshake.auth.room;
    if (room) socket.join(room);
    socket.on('echo', (data) => socket.emit('echo', data));
    socket.on('bcast', (data) => io.to('b').emit('bcast', data));
  });
  httpServer.listen(port, '127.0.0.1', () =>
    console.error(`node socket.io on 127.0.0.1:${port}${redisUrl ? ` with Redis ${redisUrl}` : ''}`),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
