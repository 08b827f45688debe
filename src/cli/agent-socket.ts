// GET from the running agent over its unix socket (<state-dir>/agent.sock,
// 0600: root only): `nhi-cni status` and `ipam check` ask it here.
/** The JSON document at `path`; rejects on a connection error, a status other than 200, bad JSON or no answer in time. */
export function askAgent(socketPath: string, path: string, timeoutMs: number): Promise<unknown> {
  // node:http is loaded when used: the start-up snapshot cannot hold its handles.
  const { request } = process.getBuiltinModule('node:http') as typeof import('node:http');
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (e) {
          reject(e);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
