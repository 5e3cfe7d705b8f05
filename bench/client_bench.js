#!/usr/bin/env node
// The Node side of bench/client_bench.py: the official socket.io-client (npm, 4.8) doing echo
// round trips against bench/servers/sio_node.js over WebSocket, printing one JSON line
// {"cpu_s", "wall_s", "messages", "chunks"} for the measured part (after a warm-up), measured
// in --chunks consecutive parts ("chunks": the CPU seconds of each).
// Usage: node client_bench.js --url URL --mode ack|echo --count N --window W --size BYTES
//        [--chunks K]
'use strict';

const { io } = require('socket.io-client');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const url = arg('url');
const mode = arg('mode', 'ack');
const count = Number(arg('count', '10000'));
const warmup = Number(arg('warmup', '1000'));
const windowSize = Number(arg('window', '1'));
const payload = 'x'.repeat(Number(arg('size', '32')));
const chunks = Number(arg('chunks', '1'));

const socket = io(url, { transports: ['websocket'] });

async function acks(n) {
  for (let i = 0; i < n; i++) await socket.emitWithAck('ack', payload);
}

function echoes(n) {
  return new Promise((resolve) => {
    let sent = 0;
    let got = 0;
    const onEcho = () => {
      got++;
      if (got === n) {
        socket.off('echo', onEcho);
        resolve();
      } else if (sent < n) {
        sent++;
        socket.emit('echo', payload);
      }
    };
    socket.on('echo', onEcho);
    for (; sent < Math.min(windowSize, n); sent++) socket.emit('echo', payload);
  });
}

socket.on('connect', async () => {
  const run = mode === 'ack' ? acks : echoes;
  await run(warmup);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const parts = [];
  const size = Math.floor(count / chunks);
  for (let i = 0; i < chunks; i++) {
    const c = process.cpuUsage();
    await run(size);
    const used = process.cpuUsage(c);
    parts.push((used.user + used.system) / 1e6);
  }
  const cpu = process.cpuUsage(cpu0);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const result = {
    cpu_s: (cpu.user + cpu.system) / 1e6,
    wall_s: wall,
    messages: size * chunks,
    chunks: parts,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  socket.close();
  process.exit(0);
});
socket.on('connect_error', (err) => {
  console.error(String(err));
  process.exit(1);
});
