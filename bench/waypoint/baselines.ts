/**
 * Reference points for the waypoint's CPU per request (bench/waypoint/run.ts
 * --baselines): what Node.js itself costs on the same machine. Three small programs,
 * pinned like the proxies: an HTTP server answering by itself, a minimal proxy on
 * `http.request` with a keep-alive Agent, and a minimal proxy on raw pooled sockets
 * (content-length responses only: enough for the echo backend).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitPort, type Proc } from './procs.js';

export const BASELINE_PROGRAMS: Record<string, string> = {
  'node-hello': `
import http from 'node:http';
const [host, port] = process.argv.slice(2);
http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 }); res.end('ok\\n'); }).listen(Number(port), host);
`,
  'node-proxy-http-request': `
import http from 'node:http';
const [host, port, bhost, bport] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256 });
http.createServer((req, res) => {
  const up = http.request({ host: bhost, port: Number(bport), method: req.method, path: req.url, headers: req.headers, agent }, (ur) => { res.writeHead(ur.statusCode, ur.rawHeaders); ur.pipe(res); });
  req.pipe(up);
}).listen(Number(port), host);
`,
  'node-proxy-raw-sockets': `
import http from 'node:http';
import net from 'node:net';
const [host, port, bhost, bport] = process.argv.slice(2);
const idle = [];
http.createServer((req, res) => {
  const go = (s) => {
    let buf = null;
    const onData = (d) => {
      buf = buf ? Buffer.concat([buf, d]) : d;
      const end = buf.indexOf('\\r\\n\\r\\n');
      if (end < 0) return;
      const lines = buf.toString('latin1', 0, end).split('\\r\\n');
      const hs = []; let len = 0;
      for (let i = 1; i < lines.length; i++) { const c = lines[i].indexOf(':'); const k = lines[i].slice(0, c), v = lines[i].slice(c + 1).trim(); const l = k.toLowerCase(); if (l === 'content-length') len = Number(v); if (l !== 'connection' && l !== 'keep-alive') hs.push(k, v); }
      const body = buf.subarray(end + 4);
      if (body.length < len) return;
      s.removeListener('data', onData); idle.push(s);
      res.writeHead(Number(lines[0].slice(9, 12)), hs); res.end(body);
    };
    s.on('data', onData);
    let h = req.method + ' ' + req.url + ' HTTP/1.1\\r\\n';
    for (let i = 0; i < req.rawHeaders.length; i += 2) h += req.rawHeaders[i] + ': ' + req.rawHeaders[i + 1] + '\\r\\n';
    s.write(h + '\\r\\n');
  };
  const s = idle.pop();
  if (s) go(s); else { const n = net.connect({ host: bhost, port: Number(bport), noDelay: true }, () => go(n)); }
}).listen(Number(port), host);
`,
};

/** Start one baseline program, pinned to `cpu`, listening on address:port, proxying to the backend. */
export async function startBaseline(name: string, dir: string, cpu: number, listen: { address: string; port: number }, backend: { address: string; port: number }): Promise<Proc> {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, BASELINE_PROGRAMS[name]!);
  const child = spawn('taskset', ['-c', String(cpu), process.execPath, file, listen.address, String(listen.port), backend.address, String(backend.port)], { stdio: 'ignore' });
  await waitPort(listen.address, listen.port, `baseline ${name}`);
  return {
    name, pid: child.pid!, child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise<void>((r) => { child.once('exit', () => r()); setTimeout(r, 2000); });
    },
  };
}
