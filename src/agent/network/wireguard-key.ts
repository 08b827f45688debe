// This node's WireGuard private key: made once, kept in <stateDir>/wireguard.key
// (0600, opened without following links, written atomically and flushed), so a
// restarted agent keeps its identity and its peers need no update. The key is
// made and its public half derived in-process (X25519 in Node's crypto, the
// clamping `wg genkey` does): it never appears in an argument list or a log.
// `wg` reads it from the file itself (`wg set <dev> private-key <file>`).
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { closeSync, constants as fsc, fstatSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../sys/files.js';
import { openNoFollow, safeRoot } from '../../sys/safe-path.js';
import { validWireguardKey } from './validate.js';

export const KEY_FILE = 'wireguard.key';

// PKCS#8 header of a raw X25519 private key (RFC 8410).
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** A fresh private key, clamped as `wg genkey` clamps it. */
export function generatePrivateKey(): string {
  const k = randomBytes(32);
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k.toString('base64');
}

export function publicKeyOf(privateKey: string): string {
  const raw = Buffer.from(privateKey, 'base64');
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32).toString('base64');
}

export class KeyFileError extends Error {}

/** Reads the key file; undefined when there is none. Refuses a link, a non-file, a file others may read, or bad content. */
function readKey(path: string): string | undefined {
  let fd: number;
  try {
    fd = openNoFollow(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeyFileError(`cannot open the WireGuard key ${path}: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new KeyFileError(`${path} is not a regular file`);
    const uid = process.geteuid?.() ?? 0;
    if (st.uid !== uid || (st.mode & 0o077) !== 0) {
      throw new KeyFileError(`the WireGuard key ${path} is readable or writable by others (mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}): the key may be known; remove the file to make a new one (peers pick up the new public key from the Node annotation)`);
    }
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const text = buf.subarray(0, n).toString('utf8').trim();
    buf.fill(0);
    if (!validWireguardKey(text)) throw new KeyFileError(`${path} does not hold a WireGuard key (base64 of 32 bytes); remove it to make a new one`);
    return text;
  } finally {
    closeSync(fd);
  }
}

/** The node's private key: the one in `<stateDir>/wireguard.key`, made and written there when missing. */
export function loadOrCreateKey(stateDir: string): { privateKey: string; publicKey: string; path: string; created: boolean } {
  safeRoot(stateDir, 'stateDir');
  const path = join(stateDir, KEY_FILE);
  let privateKey = readKey(path);
  let created = false;
  if (privateKey === undefined) {
    privateKey = generatePrivateKey();
    writeFileAtomic(path, `${privateKey}\n`, { mode: 0o600, durable: true });
    created = true;
  }
  return { privateKey, publicKey: publicKeyOf(privateKey), path, created };
}
