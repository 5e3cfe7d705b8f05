#!/usr/bin/env node
// The soak's load (bench/soak.py, issue 19 item 4), built on the official socket.io-client,
// WebSocket transport. Opens C clients in the room "b" (auth {room: "b"}), a few at a time,
// then for D seconds:
// - every client emits "ack" every A ms (jittered) with a 10 s ack timeout; an ack that times
//   out on a client that was not deliberately dropped is lost;
// - one more client emits "bcast" R times a second, the server broadcasts it to the room;
// - every minute a tenth of the clients reconnect: half close cleanly and connect again, half
//   are reset (the TCP connection destroyed with an RST: socket.resetAndDestroy()) and come
//   back through socket.io-client's reconnection.
// Prints JSON lines: {"event":"ready"}, a {"event":"sample", ...} every 10 s, then
// {"event":"result", ...}. Loopback only, bounded by D plus a hard deadline.
'use strict';

const { io } = require('socket.io-client');

const opts = { url: null, connections: 1000, duration: 600, ackMs: 5000, rate: 10, churn: 0.1 };
const names = {
  '--url': ['url', String],
  '--connections': ['connections', Number],
  '--duration': ['duration', Number],
  '--ack-ms': ['ackMs', Number],
  '--rate': ['rate', Number],
  '--churn': ['churn', Number],
};
for (let i = 2; i < process.argv.length; i += 2) {
  const spec = names[process.argv[i]];
  if (!spec) throw new Error(`bad argument: ${process.argv[i]}`);
  opts[spec[0]] = spec[1](process.argv[i + 1]);
}
const host = new URL(opts.url).hostname;
if (!(host.startsWith('127.') || host === 'localhost')) throw new Error('loopback only');

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const stats = {
  acks_sent: 0, acks_ok: 0, acks_lost: 0, acks_aborted: 0, acks_wrong: 0,
  bcast_received: 0, bcast_sent: 0, reconnects_clean: 0, resets: 0, connect_errors: 0,
};
const clients = [];
let running = true;

function client(i) {
  const s = io(opts.url, {
    transports: ['websocket'], forceNew: true, auth: { room: 'b' },
    reconnectionDelay: 200, reconnectionDelayMax: 2000, timeout: 20000,
  });
  const c = { s, i, dropping: 0, n: 0 };
  s.on('bcast', () => { stats.bcast_received++; });
  s.on('connect_error', () => { stats.connect_errors++; });
  const tick = () => {
    if (!running) return;
    if (s.connected) {
      const k = `${i}:${c.n++}`;
      const epoch = c.dropping;
      stats.acks_sent++;
      s.timeout(10000).emit('ack', k, (err, r) => {
        if (!err) {
          if (r === k) stats.acks_ok++; else stats.acks_wrong++;
        } else if (epoch !== c.dropping || !running) stats.acks_aborted++;
        else stats.acks_lost++;
      });
    }
    setTimeout(tick, opts.ackMs * (0.5 + Math.random()));
  };
  setTimeout(tick, opts.ackMs * Math.random());
  return c;
}

function whenConnected(s) {
  return new Promise((resolve) => { if (s.connected) resolve(); else s.once('connect', resolve); });
}

function churn() {
  const n = Math.round(clients.length * opts.churn);
  for (let k = 0; k < n; k++) {
    const c = clients[Math.floor(Math.random() * clients.length)];
    c.dropping++;  // its pending acks are aborted, not lost
    if (k % 2 === 0) {
      stats.reconnects_clean++;
      c.s.disconnect();
      setTimeout(() => c.s.connect(), 100);
    } else {
      const raw = c.s.io.engine && c.s.io.engine.transport && c.s.io.engine.transport.ws;
      const sock = raw && raw._socket;
      if (sock && typeof sock.resetAndDestroy === 'function') {
        stats.resets++;
        sock.resetAndDestroy();
      }
    }
  }
}

async function main() {
  const hard = setTimeout(() => { out({ event: 'result', error: 'hard deadline', ...stats }); process.exit(1); },
    (opts.duration + 300) * 1000);
  hard.unref();
  for (let i = 0; i < opts.connections; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(opts.connections, i + 50); j++) {
      const c = client(j);
      clients.push(c);
      batch.push(whenConnected(c.s));
    }
    await Promise.all(batch);
  }
  const sender = io(opts.url, { transports: ['websocket'], forceNew: true });
  await whenConnected(sender);
  out({ event: 'ready', connections: clients.length });
  const t0 = Date.now();
  let seq = 0;
  const bcastTimer = setInterval(() => {
    if (sender.connected) { sender.emit('bcast', { s: seq++, t: Date.now() }); stats.bcast_sent++; }
  }, 1000 / opts.rate);
  const sampleTimer = setInterval(() => {
    out({ event: 'sample', t: (Date.now() - t0) / 1000,
      connected: clients.filter((c) => c.s.connected).length, ...stats });
  }, 10000);
  const churnTimer = setInterval(churn, 60000);
  await sleep(opts.duration * 1000);
  clearInterval(churnTimer);
  clearInterval(bcastTimer);
  await sleep(11000);  // the last acks answer or time out
  running = false;
  clearInterval(sampleTimer);
  const connected = clients.filter((c) => c.s.connected).length;
  for (const c of clients) c.s.disconnect();
  sender.disconnect();
  out({ event: 'result', connected, ...stats });
  process.exit(0);
}

main().catch((e) => { out({ event: 'result', error: String(e && e.stack || e) }); process.exit(1); });
