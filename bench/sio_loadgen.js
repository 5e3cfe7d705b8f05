#!/usr/bin/env node
// Socket.IO load generator for bench/sio_bench.py, built on the official `socket.io-client`
// (npm), websocket transport only (`transports: ["websocket"]`, no polling, no upgrade).
//
// Modes (--mode):
//
// echo, ack: opens C connections, keeps K events in flight on each, warms up, then measures
//   for a fixed duration. "echo": the client emits "echo" with a string payload of S
//   characters and the server emits "echo" back; "ack": the client emits "ack" with an ack
//   callback and the server's handler returns the payload. Every reply is checked (it must be
//   a payload this connection sent and is still waiting for). Prints JSON lines on stdout:
//   {"event":"measure_start"}, {"event":"measure_end"}, then {"event":"result", ...}.
//
// bcast: one process of a room broadcast. It opens R receivers (auth {room: "b"}, so the
//   servers put them in the room "b") and, with --sender 1, one sender outside the room. It
//   prints {"event":"ready"} and waits for "go START_MS END_MS" on stdin: the measured window in
//   wall-clock ms (performance.timeOrigin + now, the same clock in every process). The sender
//   emits "bcast" at --rate per second with {t, s, p} (send time, sequence number, padding to
//   --size) from "go" until END_MS; receivers count deliveries received within the window and
//   their latency send -> receipt. After "stop" it waits (bounded) for the last deliveries and
//   prints the result. Several processes can share the receivers.
//
// idle: opens a few warm connections, prints {"event":"baseline"} and waits for a line on
//   stdin; opens N more (each does one echo round trip), prints {"event":"idle_ready"} and
//   waits for a line on stdin; closes everything and prints the result.
//
// --parser msgpack: every connection uses `socket.io-msgpack-parser` (for a server configured
// with it); the default is socket.io-client's built-in JSON parser.
//
// Everything is bounded: by duration, by --max-messages, and by a hard deadline after which
// the process exits on its own. Only loopback URLs are accepted.
'use strict';

const { io } = require('socket.io-client');
const {
  performance,
  parseArgs: parseCommonArgs,
  emit,
  nextStdinLine,
  sleep,
  Samples,
  openMany: openManyWith,
  runWithDeadline,
} = require('./loadgen_common');

function parseArgs(argv) {
  const opts = parseCommonArgs(
    argv,
    { openTimeout: 20, receivers: 500, sender: 1, rate: 200, firstId: 1, maxSeconds: 300, parser: 'json' },
    {
      '--parser': ['parser', String],
      '--receivers': ['receivers', Number],
      '--sender': ['sender', Number],
      '--rate': ['rate', Number],
      '--first-id': ['firstId', Number],
      '--max-seconds': ['maxSeconds', Number],
    },
  );
  if (!['echo', 'ack', 'bcast', 'idle'].includes(opts.mode)) throw new Error(`bad --mode ${opts.mode}`);
  if (!(opts.size >= 16)) throw new Error('--size must be at least 16');
  if (!(opts.inflight >= 1 && opts.connections >= 0)) throw new Error('bad --inflight/--connections');
  if (!(opts.rate > 0 && opts.rate <= 10000)) throw new Error('--rate must be in (0, 10000]');
  if (!['json', 'msgpack'].includes(opts.parser)) throw new Error(`bad --parser ${opts.parser}`);
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const S = opts.size;
const K = opts.inflight;

// socket.io-client's `parser` option: the msgpack parser module, or the built-in one.
const parserOption = opts.parser === 'msgpack' ? { parser: require('socket.io-msgpack-parser') } : {};

const wallMs = () => performance.timeOrigin + performance.now();

// ---- counters, latency samples ----------------------------------------------------------------
let connErrors = 0;
let unexpectedCloses = 0;
let mismatches = 0;
let firstError = null;
const latencies = new Samples(opts.maxSamples);

// ---- connections ------------------------------------------------------------------------------
function openConn(id, auth, setup) {
  return new Promise((resolve) => {
    const socket = io(opts.url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      timeout: opts.openTimeout * 1000,
      auth: auth || {},
      ...parserOption,
    });
    const c = { id, socket, open: false, closing: false };
    if (setup) setup(c);
    let settled = false;
    socket.on('connect', () => {
      c.open = true;
      if (!settled) { settled = true; resolve(c); }
    });
    socket.on('connect_error', (err) => {
      connErrors++;
      if (!firstError) firstError = String(err && err.message ? err.message : err);
      if (!settled) { settled = true; socket.close(); resolve(null); }
    });
    socket.on('disconnect', (reason) => {
      if (c.open && !c.closing) {
        unexpectedCloses++;
        if (!firstError) firstError = `disconnect: ${reason}`;
      }
      c.open = false;
    });
  });
}

function openMany(n, firstId, auth, setup) {
  return openManyWith(n, firstId, opts.openConcurrency, (id) => openConn(id, auth, setup));
}

function closeAll(conns) {
  for (const c of conns) {
    c.closing = true;
    try { c.socket.disconnect(); } catch { /* already closed */ }
  }
}

// Payload of exactly S characters: "<id>:<seq>:" then a fixed pattern.
const PAD = (() => {
  let s = '';
  const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  while (s.length < S + 64) s += alphabet;
  return s;
})();

function makePayload(id, seq) {
  const prefix = `${id}:${seq}:`;
  return prefix + PAD.slice(prefix.length, S);
}

// ---- echo and ack modes -------------------------------------------------------------------------
async function runEchoOrAck() {
  const useAck = opts.mode === 'ack';
  let phase = 'warmup'; // warmup -> measure -> drain
  let sentTotal = 0;
  let measured = 0;
  let inflightTotal = 0;
  let drained = null;

  function onReply(c, data) {
    const now = performance.now();
    let ok = typeof data === 'string' && data.length === S;
    let t0 = null;
    if (ok) {
      const a = data.indexOf(':');
      const b = data.indexOf(':', a + 1);
      const id = Number(data.slice(0, a));
      const seq = Number(data.slice(a + 1, b));
      t0 = c.pending.get(seq);
      ok = id === c.id && t0 !== undefined && data === makePayload(id, seq);
      if (t0 !== undefined) c.pending.delete(seq);
    }
    if (!ok) {
      mismatches++;
      if (!firstError) firstError = `mismatched reply: ${String(data).slice(0, 60)}`;
      return; // not counted as in-flight completion: the lost count will show it
    }
    inflightTotal--;
    if (phase === 'measure') {
      measured++;
      latencies.record(now - t0);
    }
    if (phase !== 'drain' && sentTotal < opts.maxMessages && c.open) {
      sendOne(c);
    } else if (inflightTotal === 0 && drained) {
      drained();
    }
  }

  function sendOne(c) {
    const seq = c.sendSeq++;
    c.pending.set(seq, performance.now());
    sentTotal++;
    inflightTotal++;
    const payload = makePayload(c.id, seq);
    if (useAck) c.socket.emit('ack', payload, (data) => onReply(c, data));
    else c.socket.emit('echo', payload);
  }

  const setup = (c) => {
    c.sendSeq = 0;
    c.pending = new Map();
    if (!useAck) c.socket.on('echo', (data) => onReply(c, data));
  };
  const conns = await openMany(opts.connections, opts.firstId, null, setup);
  if (conns.length === 0) {
    emit({ event: 'result', error: `no connection could be opened: ${firstError}`, conn_errors: connErrors });
    return 1;
  }
  for (const c of conns) for (let i = 0; i < K; i++) sendOne(c);
  await sleep(opts.warmup * 1000);

  phase = 'measure';
  emit({ event: 'measure_start' });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(opts.duration * 1000);
  phase = 'drain';
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  emit({ event: 'measure_end' });

  if (inflightTotal > 0) await Promise.race([new Promise((r) => { drained = r; }), sleep(3000)]);
  const lost = inflightTotal;
  closeAll(conns);
  const genCpu = (cpu.user + cpu.system) / 1e6;
  emit({
    event: 'result',
    mode: opts.mode,
    connections_requested: opts.connections,
    connections: conns.length,
    inflight: K,
    size: S,
    duration_s: elapsed,
    messages: measured,
    msgs_per_s: measured / elapsed,
    ...latencies.stats(),
    mismatches,
    lost,
    conn_errors: connErrors,
    unexpected_closes: unexpectedCloses,
    first_error: firstError,
    gen_cpu_s: genCpu,
    gen_cpu_pct: (100 * genCpu) / elapsed,
  });
  return 0;
}

// ---- broadcast mode ---------------------------------------------------------------------------
// The measured window is given in wall-clock time by the driver ("go START_MS END_MS"), so it
// is the same for every process and does not depend on when a busy process reads its stdin.
async function runBcast() {
  let winStart = Infinity;
  let winEnd = -Infinity;
  let inWindow = 0;
  let receivedTotal = 0;
  const pad = PAD.slice(0, Math.max(0, S - 40)); // {"t":..., "s":..., "p":"..."} about S bytes

  const setup = (c) => {
    c.socket.on('bcast', (data) => {
      const now = wallMs();
      receivedTotal++;
      if (!data || typeof data.t !== 'number' || typeof data.s !== 'number' || data.p !== pad) {
        mismatches++;
        return;
      }
      if (now >= winStart && now < winEnd) {
        inWindow++;
        latencies.record(now - data.t);
      }
    });
  };
  const receivers = await openMany(opts.receivers, opts.firstId, { room: 'b' }, setup);
  let sender = null;
  if (opts.sender) sender = await openConn(0, null, null);
  // Let the server finish putting the receivers in the room (some join asynchronously).
  await sleep(300);
  emit({ event: 'ready', receivers: receivers.length, sender: Boolean(sender), conn_errors: connErrors, first_error: firstError });

  let sent = 0;
  let sentInWindow = 0;
  let sendStart = 0;
  function tick() {
    const nowWall = wallMs();
    if (nowWall >= winEnd) return; // the sender stops at the end of the window
    const due = Math.floor(((performance.now() - sendStart) * opts.rate) / 1000);
    let burst = 0;
    while (sent < due && burst < 100 && sent < opts.maxMessages) {
      const t = wallMs();
      sender.socket.emit('bcast', { t, s: sent, p: pad });
      if (t >= winStart && t < winEnd) sentInWindow++;
      sent++;
      burst++;
    }
    setTimeout(tick, 1);
  }

  let cpu0 = null;
  let cpu = null;
  let line = await nextStdinLine();
  const m = line && /^go (\d+(?:\.\d+)?) (\d+(?:\.\d+)?)$/.exec(line);
  if (m) {
    winStart = Number(m[1]);
    winEnd = Number(m[2]);
    setTimeout(() => { cpu0 = process.cpuUsage(); }, Math.max(0, winStart - wallMs()));
    setTimeout(() => { cpu = process.cpuUsage(cpu0 || undefined); }, Math.max(0, winEnd - wallMs()));
    if (sender) {
      sendStart = performance.now();
      tick();
    }
    line = await nextStdinLine(); // "stop", sent by the driver after the window's end
  }
  // Wait (bounded) for the deliveries still on their way, so "delivered" shows a server that lags.
  const waitUntil = performance.now() + 3000;
  let last = -1;
  while (performance.now() < waitUntil) {
    await sleep(200);
    if (receivedTotal === last) break;
    last = receivedTotal;
  }
  closeAll(receivers);
  if (sender) closeAll([sender]);
  const elapsed = Number.isFinite(winEnd - winStart) ? (winEnd - winStart) / 1000 : 0;
  if (!cpu) cpu = process.cpuUsage(cpu0 || undefined);
  const genCpu = cpu0 ? (cpu.user + cpu.system) / 1e6 : 0;
  emit({
    event: 'result',
    mode: 'bcast',
    receivers: receivers.length,
    sender: Boolean(sender),
    rate: opts.rate,
    duration_s: elapsed,
    sent_total: sent,
    sent_in_window: sentInWindow,
    received_total: receivedTotal,
    deliveries: inWindow,
    ...latencies.stats(),
    mismatches,
    conn_errors: connErrors,
    unexpected_closes: unexpectedCloses,
    first_error: firstError,
    gen_cpu_s: genCpu,
    gen_cpu_pct: elapsed ? (100 * genCpu) / elapsed : 0,
  });
  return 0;
}

// ---- idle mode ----------------------------------------------------------------------------------
async function pingAll(conns) {
  // One echo round trip per connection, so the server has fully set each one up.
  await Promise.all(
    conns.map(
      (c) =>
        new Promise((resolve) => {
          const t = setTimeout(resolve, opts.openTimeout * 1000);
          c.socket.once('echo', (data) => {
            clearTimeout(t);
            if (data !== makePayload(c.id, 0)) mismatches++;
            resolve();
          });
          c.socket.emit('echo', makePayload(c.id, 0));
        }),
    ),
  );
}

async function runIdle() {
  const warm = await openMany(opts.warmConnections, 1, null, null);
  await pingAll(warm);
  emit({ event: 'baseline', connections: warm.length });
  await nextStdinLine();

  const idle = await openMany(opts.connections, 1 + opts.warmConnections, null, null);
  await pingAll(idle);
  emit({ event: 'idle_ready', connections: idle.length, conn_errors: connErrors, first_error: firstError });
  await nextStdinLine();

  closeAll(warm.concat(idle));
  emit({
    event: 'result',
    mode: 'idle',
    connections_requested: opts.connections,
    connections: idle.length,
    mismatches,
    conn_errors: connErrors,
    unexpected_closes: unexpectedCloses,
    first_error: firstError,
  });
  return 0;
}

// ---- main ---------------------------------------------------------------------------------------
const hardDeadlineMs =
  opts.mode === 'echo' || opts.mode === 'ack'
    ? (opts.warmup + opts.duration + 2 * opts.openTimeout + 30) * 1000
    : opts.maxSeconds * 1000;
const run = { echo: runEchoOrAck, ack: runEchoOrAck, bcast: runBcast, idle: runIdle }[opts.mode];
// On success, leave a moment for the disconnect packets to go out, then exit (bounded).
runWithDeadline(run, hardDeadlineMs, () => ({ mismatches, conn_errors: connErrors }), 200);
