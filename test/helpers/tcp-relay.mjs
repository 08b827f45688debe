// A TCP → unix socket relay, run inside a test network namespace
// (`ip netns exec NS node tcp-relay.mjs HOST PORT SOCKET`): it lets a process
// in the namespace reach a server of the test process (the Kubernetes API
// stand-in) without any link into the host's network. Bytes pass through
// untouched (TLS is end to end). Prints "ready" once listening.
import { createConnection, createServer } from 'node:net';

const [host, port, socketPath] = process.argv.slice(2);
const server = createServer((client) => {
  const upstream = createConnection(socketPath);
  client.pipe(upstream).pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end);
  upstream.on('error', end);
  client.on('close', end);
  upstream.on('close', end);
});
server.listen(Number(port), host, () => process.stdout.write('ready\n'));
