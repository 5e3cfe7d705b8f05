#!/usr/bin/env node
// The soak's load (bench/soak.py, issue 19 item 4), built on the official socket.io-client,
// WebSocket transport. Opens C clients in the room "b" (auth {room: "b"}), a few at a time,
// then for D seconds:
// - every client emits "ack" every A ms (jittered) with a 10 s ack timeout;
// - one more client emits "bcast" R times a second, the server broadcasts it to the room;
// - every minute a tenth of the clients reconnect: half close cleanly and connect again, half
//   are reset (the TCP connection destroyed with an RST: socket.resetAndDestroy()) and come
//   back through socket.io-client's reconnection.
// Each ack's fate is explicit (a lost ack is a server bug, everything else is not):
// - answered (acks_ok; acks_wrong if the answer is not the payload sent);
// - aborted: the client was deliberately dropped (churn) after the emit;
// - failed by disconnect: the client saw its connection end (a "disconnect" event) between
//   the emit and the deadline, though it was not dropped after the emit: an ack emitted
//   after a client reset its own socket and before socket.io-client noticed (it still said
//   connected then) lands here, and acks_in_reset_gap counts those emits; a disconnect the
//   churn did not cause is counted by reason in unexpected_disconnects;
// - failed buffered: socket.io-client did not send it at once but buffered it (the socket was
//   not connected or its ping had expired) and it timed out in the buffer;
// - late: the connection stayed up from the emit to the deadline, no answer by the deadline,
//   but the answer arrived afterwards (seen on the wire: the manager's "packet" event);
// - lost: the connection stayed up from the emit to the deadline and no answer ever came
//   (acks_lost, with the first few in lost_detail).
// The event loop's lag (a 250 ms timer's delay) is sampled too: a lagging load generator makes
// late answers that no server can avoid.
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
  acks_sent: 0, acks_ok: 0, acks_wrong: 0, acks_aborted: 0, acks_failed_disconnect: 0,
  acks_failed_buffered: 0, acks_in_reset_gap: 0, acks_timeout_up: 0, acks_late: 0,
  acks_lost: 0, acks_open: 0,
  bcast_received: 0, bcast_sent: 0, reconnects_clean: 0, resets: 0, connect_errors: 0,
  unexpected_disconnects: {}, lag_max_ms: 0,
};
const clients = [];
let running = true;
const T0 = Date.now();
// Timed out on a connection that stayed up, by payload: the answer may still come (late).
const unanswered = new Map();
const lostDetail = [];
let lagWindow = 0;
let lastLagTick = Date.now();
setInterval(() => {
  const now = Date.now();
  const lag = now - lastLagTick - 250;
  lastLagTick = now;
  if (lag > lagWindow) lagWindow = lag;
  if (lag > stats.lag_max_ms) stats.lag_max_ms = lag;
}, 250).unref();

function client(i) {
  const s = io(opts.url, {
    transports: ['websocket'], forceNew: true, auth: { room: 'b' },
    reconnectionDelay: 200, reconnectionDelayMax: 2000, timeout: 20000,
  });
  // dropping: deliberate drops so far; gen: disconnects seen so far; expect: a drop is pending
  // reset: reset by RST, its disconnect not seen yet (socket.io-client still says connected)
  const c = { s, i, dropping: 0, gen: 0, expect: 0, n: 0, reset: false };
  s.on('bcast', () => { stats.bcast_received++; });
  s.on('connect_error', () => { stats.connect_errors++; });
  s.on('disconnect', (reason) => {
    c.gen++;
    c.reset = false;
    if (c.expect > 0) c.expect--;
    else if (running) {
      stats.unexpected_disconnects[reason] = (stats.unexpected_disconnects[reason] || 0) + 1;
    }
  });
  // An ACK packet whose payload timed out while the connection stayed up: a late answer.
  s.io.on('packet', (p) => {
    if (p.type !== 3 || !Array.isArray(p.data)) return;
    const k = p.data[0];
    if (unanswered.has(k)) {
      unanswered.delete(k);
      stats.acks_late++;
    }
  });
  const tick = () => {
    if (!running) return;
    if (s.connected) {
      const k = `${i}:${c.n++}`;
      const epoch = c.dropping;
      const gen = c.gen;
      const sid = s.id;
      const t = Date.now();
      const before = s.sendBuffer.length;
      stats.acks_sent++;
      stats.acks_open++;
      if (c.reset) stats.acks_in_reset_gap++;
      s.timeout(10000).emit('ack', k, (err, r) => {
        stats.acks_open--;
        if (!err) {
          if (r === k) stats.acks_ok++; else stats.acks_wrong++;
        } else if (epoch !== c.dropping || !running) stats.acks_aborted++;
        else if (gen !== c.gen) stats.acks_failed_disconnect++;
        else if (buffered) stats.acks_failed_buffered++;
        else {
          stats.acks_timeout_up++;
          unanswered.set(k, { k, sid, emitted_s: (t - T0) / 1000, lag_ms: lagWindow });
        }
      });
      const buffered = s.sendBuffer.length > before;
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
    if (!c.s.connected) continue;  // already dropped in this round, or not back yet
    c.dropping++;  // its pending acks are aborted, not lost
    c.expect++;
    if (k % 2 === 0) {
      stats.reconnects_clean++;
      c.s.disconnect();
      setTimeout(() => c.s.connect(), 100);
    } else {
      const raw = c.s.io.engine && c.s.io.engine.transport && c.s.io.engine.transport.ws;
      const sock = raw && raw._socket;
      if (sock && typeof sock.resetAndDestroy === 'function') {
        stats.resets++;
        c.reset = true;
        sock.resetAndDestroy();
      } else c.expect--;
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
      connected: clients.filter((c) => c.s.connected).length, ...stats, lag_window_ms: lagWindow });
    lagWindow = 0;
  }, 10000);
  const churnTimer = setInterval(churn, 60000);
  await sleep(opts.duration * 1000);
  clearInterval(churnTimer);
  clearInterval(bcastTimer);
  await sleep(15000);  // the last acks answer, time out, or answer late
  running = false;
  clearInterval(sampleTimer);
  const connected = clients.filter((c) => c.s.connected).length;
  for (const c of clients) c.s.disconnect();
  sender.disconnect();
  // What timed out on a live connection and never got an answer, even late, is lost.
  stats.acks_lost = unanswered.size;
  for (const v of unanswered.values()) if (lostDetail.length < 50) lostDetail.push(v);
  out({ event: 'result', connected, ...stats, lost_detail: lostDetail });
  process.exit(0);
}

main().catch((e) => { out({ event: 'result', error: String(e && e.stack || e) }); process.exit(1); });
