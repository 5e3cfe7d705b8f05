#!/usr/bin/env node
// WebSocket echo load generator for bench/ws_echo.py.
//
// Echo mode: opens C connections to a loopback echo server, keeps K binary messages of
// S bytes in flight on each, warms up, then measures for a fixed duration. Every echo is
// checked against what was sent (length, connection id, sequence number, payload bytes).
// Prints JSON lines on stdout: {"event":"measure_start"}, {"event":"measure_end"}, then
// {"event":"result", ...}. The driver samples the server's CPU time on the first two.
//
// Idle mode: opens a few warm connections, prints {"event":"baseline"} and waits for a
// line on stdin; opens N more connections (each does one echo round trip), prints
// {"event":"idle_ready"} and waits for a line on stdin; closes everything and prints the
// result. The driver samples the server's RSS at both stops.
//
// Everything is bounded: by duration, by --max-messages, and by a hard deadline after which
// the process exits on its own. Only loopback URLs are accepted.
'use strict';

const { WebSocket } = require('ws');
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
  const opts = parseCommonArgs(argv, {}, {});
  if (!(opts.size >= 8)) throw new Error('--size must be at least 8');
  if (!(opts.inflight >= 1 && opts.connections >= 1)) throw new Error('bad --inflight/--connections');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const S = opts.size;
const K = opts.inflight;

// Payload: bytes 0..3 connection id, 4..7 sequence number, the rest a fixed pattern.
const template = Buffer.alloc(S);
for (let i = 8; i < S; i++) template[i] = (i * 31 + 7) & 0xff;

// ---- shared counters -------------------------------------------------------------------
let phase = 'warmup'; // warmup -> measure -> drain
let sentTotal = 0;
let measured = 0;
let mismatches = 0;
let connErrors = 0;
let unexpectedCloses = 0;
const latencies = new Samples(opts.maxSamples);

// ---- connections -----------------------------------------------------------------------
function openConn(id, onMessage) {
  return new Promise((resolve) => {
    const ws = new WebSocket(opts.url, { perMessageDeflate: false, handshakeTimeout: opts.openTimeout * 1000 });
    const c = { id, ws, sendSeq: 0, recvSeq: 0, times: new Float64Array(K), open: false, closing: false };
    let settled = false;
    ws.on('open', () => { c.open = true; settled = true; resolve(c); });
    ws.on('message', (data, isBinary) => onMessage(c, data, isBinary));
    ws.on('error', () => {
      connErrors++;
      if (!settled) { settled = true; resolve(null); }
    });
    ws.on('close', () => {
      if (c.open && !c.closing) unexpectedCloses++;
      c.open = false;
      if (!settled) { settled = true; resolve(null); }
    });
  });
}

function openMany(n, firstId, onMessage) {
  return openManyWith(n, firstId, opts.openConcurrency, (id) => openConn(id, onMessage));
}

function sendOne(c) {
  const buf = Buffer.allocUnsafe(S);
  template.copy(buf, 8, 8);
  buf.writeUInt32LE(c.id >>> 0, 0);
  buf.writeUInt32LE(c.sendSeq >>> 0, 4);
  c.times[c.sendSeq % K] = performance.now();
  c.sendSeq++;
  sentTotal++;
  c.ws.send(buf, { binary: true });
}

function checkEcho(c, data, isBinary) {
  return (
    isBinary &&
    Buffer.isBuffer(data) &&
    data.length === S &&
    data.readUInt32LE(0) === c.id >>> 0 &&
    data.readUInt32LE(4) === c.recvSeq >>> 0 &&
    data.compare(template, 8, S, 8, S) === 0
  );
}

function closeAll(conns) {
  return Promise.all(
    conns.map(
      (c) =>
        new Promise((resolve) => {
          c.closing = true;
          if (c.ws.readyState === WebSocket.CLOSED) return resolve();
          const t = setTimeout(() => { c.ws.terminate(); resolve(); }, 2000);
          c.ws.once('close', () => { clearTimeout(t); resolve(); });
          try { c.ws.close(1000); } catch { c.ws.terminate(); }
        }),
    ),
  );
}

// ---- echo mode ---------------------------------------------------------------------------
async function runEcho() {
  let inflightTotal = 0;
  let drained = null;
  const onMessage = (c, data, isBinary) => {
    const now = performance.now();
    if (!checkEcho(c, data, isBinary)) mismatches++;
    const t0 = c.times[c.recvSeq % K];
    c.recvSeq++;
    inflightTotal--;
    if (phase === 'measure') {
      measured++;
      latencies.record(now - t0);
    }
    if (phase !== 'drain' && sentTotal < opts.maxMessages && c.open) {
      sendOne(c);
      inflightTotal++;
    } else if (inflightTotal === 0 && drained) {
      drained();
    }
  };

  const conns = await openMany(opts.connections, 1, onMessage);
  if (conns.length === 0) {
    emit({ event: 'result', error: 'no connection could be opened', conn_errors: connErrors });
    return 1;
  }
  for (const c of conns) {
    for (let i = 0; i < K; i++) { sendOne(c); inflightTotal++; }
  }
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

  // Let outstanding echoes come back (so mismatches are counted), bounded in time: three
  // times the slowest round trip seen, at least 3 s, at most 30 s.
  if (inflightTotal > 0) {
    const drainMs = Math.min(30000, Math.max(3000, 3 * latencies.max));
    await Promise.race([new Promise((r) => { drained = r; }), sleep(drainMs)]);
  }
  const lost = inflightTotal;
  await closeAll(conns);

  const genCpu = (cpu.user + cpu.system) / 1e6;
  emit({
    event: 'result',
    mode: 'echo',
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
    gen_cpu_s: genCpu,
    gen_cpu_pct: (100 * genCpu) / elapsed,
  });
  return 0;
}

// ---- idle mode ---------------------------------------------------------------------------
async function pingAll(conns) {
  // One echo round trip per connection, so the server has fully set each one up.
  await Promise.all(
    conns.map(
      (c) =>
        new Promise((resolve) => {
          const t = setTimeout(() => { c.pending = null; resolve(); }, opts.openTimeout * 1000);
          c.pending = () => { clearTimeout(t); resolve(); };
          sendOne(c);
        }),
    ),
  );
}

async function runIdle() {
  const onMessage = (c, data, isBinary) => {
    if (!checkEcho(c, data, isBinary)) mismatches++;
    c.recvSeq++;
    if (c.pending) { const p = c.pending; c.pending = null; p(); }
  };
  const warm = await openMany(opts.warmConnections, 1, onMessage);
  await pingAll(warm);
  emit({ event: 'baseline', connections: warm.length });
  await nextStdinLine();

  const idle = await openMany(opts.connections, 1 + opts.warmConnections, onMessage);
  await pingAll(idle);
  emit({ event: 'idle_ready', connections: idle.length, conn_errors: connErrors });
  await nextStdinLine();

  await closeAll(warm.concat(idle));
  emit({
    event: 'result',
    mode: 'idle',
    connections_requested: opts.connections,
    connections: idle.length,
    size: S,
    mismatches,
    conn_errors: connErrors,
    unexpected_closes: unexpectedCloses,
  });
  return 0;
}

// ---- main --------------------------------------------------------------------------------
const hardDeadlineMs =
  opts.mode === 'idle'
    ? (120 + 4 * opts.openTimeout) * 1000
    : (opts.warmup + opts.duration + 2 * opts.openTimeout + 45) * 1000;
runWithDeadline(
  opts.mode === 'idle' ? runIdle : runEcho,
  hardDeadlineMs,
  () => ({ mismatches, conn_errors: connErrors }),
  0,
);
