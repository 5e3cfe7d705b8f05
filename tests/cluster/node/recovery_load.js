#!/usr/bin/env node
// A mass reconnection with connection state recovery, for bench/cluster_bench.py --recovery:
// N official socket.io-client clients (WebSocket) join the room "b" through the nodes given
// (client i on node i % n), get one broadcast (so that each has an offset), then are sent
// away (their next reconnection aimed at a closed port, their transport closed); while they
// are away a sender on node 0 has K packets broadcast to the room; then every client is
// pointed at the next node (client i at node (i + 1) % n) and the time until every client
// has recovered (socket.recovered) and got its K missed packets is measured.
// Prints one JSON line: {clients, missed, recovered, packets, seconds, per_s, errors}.
// Usage: node recovery_load.js --urls http://h:p,http://h:q --clients 1000 --missed 20
'use strict';

const path = require('path');
const { io } = require(path.join(__dirname, 'node_modules', 'socket.io-client'));

const opts = { urls: '', clients: 1000, missed: 20, 'timeout-ms': 60000 };
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, '');
  opts[name] = typeof opts[name] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const urls = opts.urls.split(',');
const nowhere = 'http://127.0.0.1:9';
setTimeout(() => { console.log(JSON.stringify({ error: 'timeout' })); process.exit(3); },
  opts['timeout-ms']);

function waitFor(check) {
  return new Promise((resolve) => {
    const t = setInterval(() => { if (check()) { clearInterval(t); resolve(); } }, 5);
  });
}

async function main() {
  const clients = [];
  let connected = 0;
  let errors = 0;
  for (let i = 0; i < opts.clients; i++) {
    const c = io(urls[i % urls.length], {
      transports: ['websocket'], forceNew: true, auth: { room: 'b' },
      reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0.5,
    });
    c.got = 0;
    c.recoveredAt = null;
    c.on('bcast', () => { c.got += 1; });
    c.on('connect', () => {
      if (c.recovered) c.recoveredAt = Date.now();
      else connected += 1;
    });
    c.on('connect_error', () => { errors += 1; });
    clients.push(c);
    if (i % 50 === 49) await waitFor(() => connected >= i + 1);
  }
  await waitFor(() => connected >= opts.clients);
  const sender = io(urls[0], { transports: ['websocket'], forceNew: true });
  await new Promise((resolve) => sender.once('connect', resolve));
  sender.emit('bcast', 'first');
  await waitFor(() => clients.every((c) => c.got >= 1));
  await new Promise((r) => setTimeout(r, 500)); // the nodes saved every session
  for (const c of clients) { c.io.uri = nowhere; c.io.engine.close(); }
  await waitFor(() => clients.every((c) => !c.connected));
  for (let k = 0; k < opts.missed; k++) sender.emit('bcast', k);
  await new Promise((r) => setTimeout(r, 1000)); // appended to the stream
  const start = Date.now();
  clients.forEach((c, i) => { c.io.uri = urls[(i + 1) % urls.length]; });
  const want = 1 + opts.missed;
  await waitFor(() => clients.every((c) => c.connected && c.got >= want) ||
    clients.every((c) => c.connected) && Date.now() - start > 20000);
  const last = Math.max(...clients.map((c) => c.recoveredAt || 0));
  const done = clients.filter((c) => c.recoveredAt && c.got >= want).length;
  const seconds = (last - start) / 1000;
  const packets = clients.reduce((n, c) => n + Math.max(0, c.got - 1), 0);
  console.log(JSON.stringify({
    clients: opts.clients, missed: opts.missed, recovered: done, packets,
    seconds, per_s: seconds > 0 ? packets / seconds : null, errors,
  }));
  for (const c of clients) c.disconnect();
  sender.disconnect();
  process.exit(0);
}

main().catch((err) => { console.log(JSON.stringify({ error: String(err) })); process.exit(1); });
