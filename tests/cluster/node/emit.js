#!/usr/bin/env node
// Node's @socket.io/redis-emitter 5, for tests/cluster/test_redis_emitter.py: runs the
// operations given as JSON in argv[2] either against a real Redis (--redis URL) or against a
// capturing client (--capture), which prints each publish as {channel, hex} JSON lines.
// Operation: {op: "emit"|"socketsJoin"|"socketsLeave"|"disconnectSockets"|"serverSideEmit",
//             nsp?, to?: [...], except?: [...], volatile?, compress?, ev?, args?, rooms?, close?}
'use strict';

const path = require('path');
const mod = (name) => require(path.join(__dirname, 'node_modules', name));
const { Emitter } = mod('@socket.io/redis-emitter');

async function main() {
  const ops = JSON.parse(process.argv[2]);
  const mode = process.argv[3];
  let client;
  if (mode === '--capture') {
    client = { publish(channel, msg) {
      const buf = Buffer.isBuffer(msg) ? msg : Buffer.from(msg);
      process.stdout.write(JSON.stringify({ channel, hex: buf.toString('hex') }) + '\n');
    } };
  } else {
    const { createClient } = mod('redis');
    client = createClient({ url: process.argv[4] });
    await client.connect();
  }
  const root = new Emitter(client);
  for (const op of ops) {
    let e = op.nsp ? root.of(op.nsp) : root;
    if (op.to) e = e.to(op.to);
    if (op.except) e = e.except(op.except);
    if (op.volatile) e = e.volatile;
    if (op.compress !== undefined) e = e.compress(op.compress);
    const args = (op.args || []).map((a) => (a && a.$bytes ? Buffer.from(a.$bytes, 'hex') : a));
    if (op.op === 'emit') e.emit(op.ev, ...args);
    else if (op.op === 'socketsJoin') e.socketsJoin(op.rooms);
    else if (op.op === 'socketsLeave') e.socketsLeave(op.rooms);
    else if (op.op === 'disconnectSockets') e.disconnectSockets(op.close);
    else if (op.op === 'serverSideEmit') e.serverSideEmit(op.ev, ...args);
  }
  if (client.quit) await client.quit();
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
