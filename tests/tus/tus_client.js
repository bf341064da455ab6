// tus-js-client (the protocol's own client, from npm) against the module,
// through a TCP proxy on loopback that cuts the connection after a random
// number of bytes. Driven by test_tus_client.py; the last line printed is
// JSON. Environment:
//   SU_FILE     the file to upload
//   SU_TARGETS  host:port[,host:port]: the node(s) the proxy forwards to
//   SU_MODE     "cuts": SU_CUTS cuts at random points, resumed each time;
//               "nodes": one cut on the first node, the rest on the second;
//               "start": one cut, no retry (the upload is left unfinished)
//   SU_PATH     the tus location (default /api/tus/)
'use strict';
const fs = require('fs');
const net = require('net');
const tus = require('tus-js-client');

const file = fs.readFileSync(process.env.SU_FILE);
const targets = process.env.SU_TARGETS.split(',').map((t) => {
  const [host, port] = t.split(':');
  return { host, port: Number(port) };
});
const mode = process.env.SU_MODE || 'cuts';
const path = process.env.SU_PATH || '/api/tus/';

// A proxy to targets[which.node] that cuts every connection open when the
// bytes sent upstream (over all connections) pass the next cut point.
function proxy(cutPoints, which) {
  let sent = 0;
  const cuts = [];
  const open = new Set();
  const server = net.createServer((client) => {
    const t = targets[which.node];
    const up = net.connect(t.port, t.host);
    const pair = { client, up };
    open.add(pair);
    const drop = () => { client.destroy(); up.destroy(); open.delete(pair); };
    client.on('data', (buf) => {
      sent += buf.length;
      if (cutPoints.length && sent >= cutPoints[0]) {
        cuts.push({ at: cutPoints.shift(), sent });
        drop();
        return;
      }
      up.write(buf);
    });
    up.on('data', (buf) => client.write(buf));
    client.on('error', drop); up.on('error', drop);
    client.on('close', drop); up.on('close', drop);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1',
    () => resolve({ server, cuts, port: server.address().port })));
}

function randomCuts(n, total) {
  const pts = [];
  for (let i = 0; i < n; i++) pts.push(Math.floor(Math.random() * total * 0.9) + 1000);
  return pts.sort((a, b) => a - b);
}

function upload(endpoint, opts) {
  return new Promise((resolve, reject) => {
    const events = { progress: 0, errors: [] };
    const up = new tus.Upload(file, Object.assign({
      endpoint,
      metadata: { filename: 'big.bin', filetype: 'application/octet-stream' },
      onError: (err) => reject(Object.assign(err, { url: up.url, events })),
      onSuccess: () => resolve({ url: up.url, events }),
      onShouldRetry: (err) => { events.errors.push(String(err.message).slice(0, 200)); return true; },
    }, opts));
    up.start();
  });
}

async function main() {
  const which = { node: 0 };
  const total = file.length;
  let out;
  if (mode === 'cuts') {
    const p = await proxy(randomCuts(Number(process.env.SU_CUTS || 3), total), which);
    const t0 = Date.now();
    const r = await upload(`http://127.0.0.1:${p.port}${path}`,
      { retryDelays: [0, 100, 300, 500, 1000, 1000, 2000, 2000, 3000] });
    out = { url: r.url, cuts: p.cuts, retries: r.events.errors, ms: Date.now() - t0 };
    p.server.close();
  } else if (mode === 'nodes' || mode === 'start') {
    const p = await proxy([Math.floor(total * (0.3 + Math.random() * 0.4))], which);
    let url;
    try {
      await upload(`http://127.0.0.1:${p.port}${path}`, { retryDelays: null });
      throw new Error('the upload ended without the cut');
    } catch (err) {
      if (!err.url) throw err;
      url = err.url;
    }
    out = { first_url: url, cuts: p.cuts };
    if (mode === 'nodes') {
      // the second node, straight (no proxy), by the upload's URL
      const second = targets[1];
      const resumed = url.replace(/^http:\/\/[^/]+/, `http://${second.host}:${second.port}`);
      // HEAD may race the first node saving what it had received: retry
      const r = await upload(`http://${second.host}:${second.port}${path}`,
        { uploadUrl: resumed, retryDelays: [100, 300, 500, 1000, 2000] });
      out.url = r.url;
      out.retries = r.events.errors;
    }
    p.server.close();
  }
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
