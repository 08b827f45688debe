// Real traffic between test namespaces: TCP servers and UDP echo servers in a
// pod (one Node process per pod), and one-shot clients that report whether a
// connection got an answer. Only addresses of namespaces the test created.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import type { Netns } from './netns.js';

const SERVER = `
const net = require('net'), dgram = require('dgram');
const [tcp, udp] = [JSON.parse(process.argv[1]), JSON.parse(process.argv[2])];
let pending = tcp.length + udp.length;
const up = () => { if (--pending === 0) console.log('ready'); };
for (const p of tcp) net.createServer((s) => s.end('hello ' + p)).listen(p, '::', up);
for (const p of udp) { const s = dgram.createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(p, up); }
if (pending === 0) console.log('ready');
`;

export async function startServers(pod: Netns, tcp: number[], udp: number[] = []): Promise<ChildProcess> {
  const p = spawn('ip', ['netns', 'exec', pod.name, process.execPath, '-e', SERVER, JSON.stringify(tcp), JSON.stringify(udp)]);
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve());
    p.once('exit', (c) => reject(new Error(`servers in ${pod.name} exited with ${c}`)));
  });
  return p;
}

const CLIENT = `
const [proto, host, port] = [process.argv[1], process.argv[2], Number(process.argv[3])];
const done = (ok) => { console.log(ok ? 'ok' : 'fail'); process.exit(0); };
setTimeout(() => done(false), 1500);
if (proto === 'tcp') {
  const s = require('net').connect(port, host);
  s.on('data', () => done(true)); s.on('error', () => done(false));
} else {
  const s = require('dgram').createSocket('udp4');
  s.on('message', () => done(true)); s.send('ping', port, host);
}
`;

/** Whether `from` gets an answer from host:port (TCP: a greeting; UDP: an echo). */
export function reaches(from: Netns, host: string, port: number, proto: 'tcp' | 'udp' = 'tcp'): boolean {
  const r = spawnSync('ip', ['netns', 'exec', from.name, process.execPath, '-e', CLIENT, proto, host, String(port)], { encoding: 'utf8' });
  return r.stdout.trim() === 'ok';
}

/** reaches() without blocking the test process. */
export function reachesAsync(from: Netns, host: string, port: number, proto: 'tcp' | 'udp' = 'tcp'): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', from.name, process.execPath, '-e', CLIENT, proto, host, String(port)], { encoding: 'utf8' }, (_e, stdout) => resolve(stdout.trim() === 'ok'));
  });
}
