#!/usr/bin/env node
// A Node member of a streams cluster, for tests/cluster/test_redis_streams.py: a socket.io
// server with @socket.io/redis-streams-adapter and connection state recovery (unless
// --no-server), plus official socket.io-client clients (to any node, ours or Node's). The
// Python test drives it with JSON lines on stdin and reads what happened on stdout; this
// script only acts and observes.
//
// Usage: node streams_peer.js --redis URL [--port 0] [--stream socket.io]
//                             [--prefix socket.io] [--server 1] [--timeout-ms 120000]
//                             [--sharded 1]   (useShardedPubSub: true)
//
// Lines printed: listening {port, uid} | reply {id, ...} | got {client, name, args}
//   connected {client, sid, recovered} | client-disconnect {client, reason} | error {message}
// Commands ({id, cmd, ...}):
//   connect {name, url, room?, source?} -> reply {sid, recovered}; reconnects (forever, 100 ms);
//                                     source: the local address to connect from
//   retarget {client, url}            the client's next reconnection goes to url
//   drop {client}                     closes the client's transport (a recoverable loss)
//   call {client, ev, args}           -> reply {args}
//   emit {room?, ev, args}            io.to(room).emit(ev, ...args) on this Node server
//   fetch {room?}                     -> reply {sockets: [{id, rooms, data}]}
//   quit
'use strict';

const path = require('path');
const http = require('http');
const readline = require('readline');
const mod = (name) => require(path.join(__dirname, 'node_modules', name));
const { Server } = mod('socket.io');
const { io: connect } = mod('socket.io-client');
const { createAdapter } = mod('@socket.io/redis-streams-adapter');
const { createClient } = mod('redis');

const opts = { redis: null, port: 0, stream: 'socket.io', prefix: 'socket.io', server: 1,
  'timeout-ms': 120000, sharded: 0 };
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, '');
  if (!(name in opts)) throw new Error(`bad argument ${process.argv[i]}`);
  opts[name] = typeof opts[name] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const clients = new Map();
const hardStop = setTimeout(() => process.exit(3), opts['timeout-ms']);

async function main() {
  let io = null;
  let port = 0;
  let uid = null;
  if (opts.server) {
    const redis = createClient({ url: opts.redis });
    redis.on('error', (err) => print({ event: 'error', message: `redis: ${err.message}` }));
    await redis.connect();
    const httpServer = http.createServer();
    io = new Server(httpServer, {
      adapter: createAdapter(redis, { streamName: opts.stream, channelPrefix: opts.prefix,
        useShardedPubSub: Boolean(opts.sharded) }),
      connectionStateRecovery: { maxDisconnectionDuration: 60000 },
      cors: { origin: '*' },
      serveClient: false,
    });
    io.on('connection', (socket) => {
      if (!socket.recovered) {
        socket.data.node = 'node';
        const room = socket.handshake.auth && socket.handshake.auth.room;
        if (typeof room === 'string') socket.join(room);
      }
      socket.on('whoami', (cb) => cb({ node: 'node', sid: socket.id, data: socket.data,
        rooms: [...socket.rooms].sort(), recovered: socket.recovered }));
      socket.on('shout', (msg, cb) => { io.to(msg.room).emit(msg.event, msg.data); cb('ok'); });
    });
    await new Promise((resolve) => httpServer.listen(opts.port, '127.0.0.1', resolve));
    port = httpServer.address().port;
    uid = io.of('/').adapter.uid;
  }
  print({ event: 'listening', port, uid });

  const handlers = {
    connect(cmd) {
      return new Promise((resolve) => {
        const socket = connect(cmd.url, {
          transports: ['websocket'], forceNew: true, reconnectionDelay: 100,
          reconnectionDelayMax: 200, auth: cmd.room ? { room: cmd.room } : {},
          localAddress: cmd.source,
        });
        clients.set(cmd.name, socket);
        socket.onAny((name, ...args) => print({ event: 'got', client: cmd.name, name, args }));
        socket.on('disconnect', (reason) =>
          print({ event: 'client-disconnect', client: cmd.name, reason }));
        socket.on('connect', () =>
          print({ event: 'connected', client: cmd.name, sid: socket.id, recovered: socket.recovered }));
        socket.once('connect', () => resolve({ sid: socket.id, recovered: socket.recovered }));
      });
    },
    retarget(cmd) {
      clients.get(cmd.client).io.uri = cmd.url;
      return {};
    },
    drop(cmd) {
      clients.get(cmd.client).io.engine.close();
      return {};
    },
    async call(cmd) {
      const socket = clients.get(cmd.client);
      try {
        return { args: [await socket.timeout(5000).emitWithAck(cmd.ev, ...(cmd.args || []))] };
      } catch (err) {
        return { error: String(err.message || err) };
      }
    },
    emit(cmd) {
      (cmd.room ? io.to(cmd.room) : io).emit(cmd.ev, ...(cmd.args || []));
      return {};
    },
    async fetch(cmd) {
      const found = await (cmd.room ? io.in(cmd.room) : io).fetchSockets();
      return { sockets: found.map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data })) };
    },
    quit() {
      for (const socket of clients.values()) socket.disconnect();
      setTimeout(() => { clearTimeout(hardStop); process.exit(0); }, 100);
      return {};
    },
  };

  readline.createInterface({ input: process.stdin }).on('line', async (line) => {
    const cmd = JSON.parse(line);
    try {
      print({ event: 'reply', id: cmd.id, ...(await handlers[cmd.cmd](cmd)) });
    } catch (err) {
      print({ event: 'reply', id: cmd.id, error: String(err && err.stack ? err.stack : err) });
    }
  }).on('close', () => handlers.quit());
}

main().catch((err) => {
  print({ event: 'error', message: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
