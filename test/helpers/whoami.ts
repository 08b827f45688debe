// "Who am I talking to" traffic for multi-node tests: a server in a pod that
// answers every TCP connection and UDP datagram with the source address it
// saw (so a test proves there was no NAT on the way), and a client that asks
// many targets in one process and returns what each answered.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import type { Netns } from './netns.js';

const SERVER = `
const net = require('net'), dgram = require('dgram');
const port = Number(process.argv[1]);
const bare = (a) => a.startsWith('::ffff:') ? a.slice(7) : a;
let pending = 2;
const up = () => { if (--pending === 0) console.log('ready'); };
net.createServer((s) => { s.on('error', () => {}); s.once('data', () => s.end(bare(s.remoteAddress))); }).listen(port, '::', up);
const u = dgram.createSocket({ type: 'udp6', ipv6Only: false });
u.on('message', (m, r) => u.send(bare(r.address), r.port, r.address));
u.bind(port, '::', up);
`;

export async function startWhoami(pod: Netns, port: number): Promise<ChildProcess> {
  const p = spawn('ip', ['netns', 'exec', pod.name, process.execPath, '-e', SERVER, String(port)]);
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve());
    p.once('exit', (c) => reject(new Error(`whoami server in ${pod.name} exited with ${c}`)));
  });
  return p;
}

export interface Target {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
}

const CLIENT = `
const net = require('net'), dgram = require('dgram');
const [targets, payload, wait] = [JSON.parse(process.argv[1]), process.argv[2], Number(process.argv[3])];
const one = (t) => new Promise((done) => {
  const timer = setTimeout(() => done(null), wait);
  const end = (v) => { clearTimeout(timer); done(v); };
  if (t.proto === 'tcp') {
    let got = '';
    const s = net.connect(t.port, t.host, () => s.write(payload));
    s.on('data', (d) => (got += d)); s.on('end', () => { end(got); s.destroy(); }); s.on('error', () => end(null));
  } else {
    const s = dgram.createSocket(t.host.includes(':') ? 'udp6' : 'udp4');
    s.on('message', (m) => { s.close(); end(String(m)); }); s.on('error', () => end(null));
    s.send(payload, t.port, t.host);
  }
});
Promise.all(targets.map(one)).then((r) => { console.log(JSON.stringify(r)); process.exit(0); });
`;

/** For each target, the source address the server saw (undefined: no answer within `waitMs`). One process per call. */
export function askAll(from: Netns, targets: Target[], payload = 'who', waitMs = 2000): (string | undefined)[] {
  const r = spawnSync('ip', ['netns', 'exec', from.name, process.execPath, '-e', CLIENT, JSON.stringify(targets), payload, String(waitMs)], { encoding: 'utf8' });
  const out = JSON.parse(r.stdout.trim() || 'null') as (string | null)[] | null;
  if (!out) throw new Error(`client in ${from.name} failed: ${r.stderr}`);
  return out.map((v) => v ?? undefined);
}

/** askAll without blocking: several pods can ask at once. */
export function askAllAsync(from: Netns, targets: Target[], payload = 'who', waitMs = 2000): Promise<(string | undefined)[]> {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', from.name, process.execPath, '-e', CLIENT, JSON.stringify(targets), payload, String(waitMs)], { encoding: 'utf8' }, (_err, stdout, stderr) => {
      const out = JSON.parse(stdout.trim() || 'null') as (string | null)[] | null;
      if (!out) reject(new Error(`client in ${from.name} failed: ${stderr}`));
      else resolve(out.map((v) => v ?? undefined));
    });
  });
}
