// Peer: the echo server a Node.js user writes with `ws` (version pinned in
// package-lock.json): one process, `WebSocketServer` on an `http` server,
// every text or binary message sent back as it came. No per-message deflate
// (the default of `ws` 8 on servers).
//
//   node server.js [--listen 127.0.0.1:0]
//
// Prints `READY addr:port pid N` as the other bench servers do.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const i = process.argv.indexOf('--listen');
const listen = i > 0 ? process.argv[i + 1] : '127.0.0.1:0';
const sep = listen.lastIndexOf(':');
const host = listen.slice(0, sep);
const port = Number(listen.slice(sep + 1));

const server = http.createServer((req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});
const wss = new WebSocketServer({ server });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
server.listen(port, host, () => {
  const a = server.address();
  console.log(`READY ${a.address}:${a.port} pid ${process.pid}`);
});
