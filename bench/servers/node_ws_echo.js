#!/usr/bin/env node
// Echo peer: Node `ws` (npm), permessage-deflate off. Usage: node node_ws_echo.js --port N
'use strict';

const { WebSocketServer } = require('ws');

const i = process.argv.indexOf('--port');
const port = i >= 0 ? Number(process.argv[i + 1]) : NaN;
if (!Number.isInteger(port)) {
  console.error('usage: node node_ws_echo.js --port N');
  process.exit(2);
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`node ws echo on 127.0.0.1:${port}`));
