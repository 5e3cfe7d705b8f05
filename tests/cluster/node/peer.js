#!/usr/bin/env node
// A Node member of a mixed cluster, for tests/cluster/test_node_interop.py: a socket.io server
// with @socket.io/redis-adapter (classic pub/sub, `createAdapter`) on a real Redis, plus any
// number of official socket.io-client clients (to this server or to any other, e.g. a
// pyserver node). The Python test drives it with JSON lines on stdin and reads what happened
// as JSON lines on stdout. This script only acts and observes; the test asserts.
//
// Usage: node peer.js --redis redis://127.0.0.1:PORT/0 [--port 0] [--key socket.io]
//                     [--timeout-ms 60000] [--sharded 1] [--cluster 1]
// (--sharded 1: createShardedAdapter, Redis 7's sharded pub/sub, with --key as channelPrefix;
// --cluster 1: --redis is one master of a Redis Cluster, the clients are redis's createCluster)
//
// Lines printed (field "event"):
//   listening {port, uid}                       once the server listens and the adapter is up
//   reply {id, ...}                             the answer to the command with that id
//   got {client, name, args}                    an event a client received
//   server-event {name, args}                   a serverSideEmit this server received
//   client-disconnect {client, reason}          error {message}   exit {reason}
//
// Commands (one JSON object per line, each with an "id"):
//   {cmd: "connect", name, url, room?, transports?}      -> reply {sid}
//   {cmd: "call", client, ev, args}                      -> reply {args}: the ack's arguments
//   {cmd: "emit", room?, ev, args}                       -> io.to(room).emit(ev, ...args)
//   {cmd: "fetch", room?}                                -> reply {sockets: [{id, rooms, data}]}
//   {cmd: "ack-broadcast", room?, ev, args, timeout}     -> reply {error, replies}
//   {cmd: "server-emit", ev, args}                       -> io.serverSideEmit(ev, ...args)
//   {cmd: "server-emit-ack", ev, args}                   -> reply {error, replies}
//   {cmd: "sockets-join", room, join}                    -> io.in(room).socketsJoin(join)
//   {cmd: "disconnect-sockets", room}                    -> io.in(room).disconnectSockets(true)
//   {cmd: "server-count"}                                -> reply {count}
//   {cmd: "quit"}
// The server's own sockets: on connection, socket.data.node = "node" and the socket joins
// auth.room when given. Every client answers the event "ask" with {client, args}. The
// server answers serverSideEmit("whoami-node", ...args, cb) with {node: "node", args}.
'use strict';

const path = require('path');
const http = require('http');
const readline = require('readline');
const mod = (name) => require(path.join(__dirname, 'node_modules', name));
const { Server } = mod('socket.io');
const { io: connect } = mod('socket.io-client');
const { createAdapter, createShardedAdapter } = mod('@socket.io/redis-adapter');
const { createClient, createCluster } = mod('redis');

function parseArgs(argv) {
  const out = { redis: null, port: 0, key: 'socket.io', 'timeout-ms': 60000, sharded: 0, cluster: 0 };
  for (let i = 2; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in out) || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    out[name] = typeof out[name] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!out.redis) throw new Error('--redis is required');
  return out;
}

const opts = parseArgs(process.argv);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const clients = new Map();

// Everything is bounded: the process leaves on its own after --timeout-ms.
const hardStop = setTimeout(() => {
  print({ event: 'exit', reason: 'timeout' });
  process.exit(3);
}, opts['timeout-ms']);

async function main() {
  const pub = opts.cluster
    ? createCluster({ rootNodes: [{ url: opts.redis }] })
    : createClient({ url: opts.redis });
  const sub = pub.duplicate();
  pub.on('error', (err) => print({ event: 'error', message: `redis pub: ${err.message}` }));
  sub.on('error', (err) => print({ event: 'error', message: `redis sub: ${err.message}` }));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    adapter: opts.sharded
      ? createShardedAdapter(pub, sub, { channelPrefix: opts.key })
      : createAdapter(pub, sub, { key: opts.key, requestsTimeout: 5000 }),
    cors: { origin: '*' },
    serveClient: false,
  });

  io.on('connection', (socket) => {
    socket.data.node = 'node';
    const room = socket.handshake.auth && socket.handshake.auth.room;
    if (typeof room === 'string') socket.join(room);
  });
  for (const name of ['whoami-node', 'note']) {
    io.on(name, (...args) => {
      const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null;
      print({ event: 'server-event', name, args });
      if (cb) cb({ node: 'node', args });
    });
  }

  await new Promise((resolve) => httpServer.listen(opts.port, '127.0.0.1', resolve));
  print({ event: 'listening', port: httpServer.address().port, uid: io.of('/').adapter.uid });

  const handlers = {
    connect(cmd) {
      return new Promise((resolve) => {
        const socket = connect(cmd.url, {
          transports: cmd.transports || ['websocket'],
          forceNew: true,
          reconnection: false,
          auth: cmd.room ? { room: cmd.room } : {},
        });
        clients.set(cmd.name, socket);
        socket.onAny((name, ...args) => {
          const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null;
          print({ event: 'got', client: cmd.name, name, args });
          if (name === 'ask' && cb) cb({ client: cmd.name, args });
        });
        socket.on('disconnect', (reason) => print({ event: 'client-disconnect', client: cmd.name, reason }));
        socket.once('connect', () => resolve({ sid: socket.id }));
        socket.once('connect_error', (err) => resolve({ error: String(err.message || err) }));
      });
    },
    async call(cmd) {
      const socket = clients.get(cmd.client);
      if (!socket) return { error: `no client ${cmd.client}` };
      try {
        const args = await socket.timeout(5000).emitWithAck(cmd.ev, ...(cmd.args || []));
        return { args: [args] };
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
    'ack-broadcast'(cmd) {
      return new Promise((resolve) => {
        (cmd.room ? io.to(cmd.room) : io)
          .timeout(cmd.timeout || 5000)
          .emit(cmd.ev, ...(cmd.args || []), (err, replies) =>
            resolve({ error: err ? String(err.message || err) : null, replies }),
          );
      });
    },
    'server-emit'(cmd) {
      io.serverSideEmit(cmd.ev, ...(cmd.args || []));
      return {};
    },
    'server-emit-ack'(cmd) {
      // the adapter's requestsTimeout (5 s) bounds it
      return new Promise((resolve) => {
        io.serverSideEmit(cmd.ev, ...(cmd.args || []), (err, replies) =>
          resolve({ error: err ? String(err.message || err) : null, replies }),
        );
      });
    },
    'sockets-join'(cmd) {
      io.in(cmd.room).socketsJoin(cmd.join);
      return {};
    },
    'disconnect-sockets'(cmd) {
      io.in(cmd.room).disconnectSockets(true);
      return {};
    },
    async 'server-count'() {
      return { count: await io.of('/').adapter.serverCount() };
    },
    quit() {
      for (const socket of clients.values()) socket.disconnect();
      setTimeout(() => {
        clearTimeout(hardStop);
        print({ event: 'exit', reason: 'quit' });
        process.exit(0);
      }, 100);
      return {};
    },
  };

  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (err) {
      print({ event: 'error', message: `not JSON: ${line}` });
      return;
    }
    const handler = handlers[cmd.cmd];
    if (!handler) {
      print({ event: 'reply', id: cmd.id, error: `unknown command ${cmd.cmd}` });
      return;
    }
    try {
      print({ event: 'reply', id: cmd.id, ...(await handler(cmd)) });
    } catch (err) {
      print({ event: 'reply', id: cmd.id, error: String(err && err.stack ? err.stack : err) });
    }
  });
  rl.on('close', () => handlers.quit());
}

main().catch((err) => {
  print({ event: 'error', message: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
