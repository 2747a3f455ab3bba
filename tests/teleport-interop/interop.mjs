// A real DXOS 0.8.3 Teleport for crates/teleport's interop test and the teleport benchmark.
//
// node interop.mjs --port P --peer HEX [--mode interop|bench-send] [--bytes N] [--heartbeat-ms T]
//   Connects to 127.0.0.1:P, runs Teleport (not the initiator) with extension "mesh.interop":
//   an RPC port serving example.testing.rpc.TestService and a byte stream "bulk".
//   interop: calls TestCall and VoidCall on the Rust side, sends N bytes of random data on "bulk"
//     and hashes what it receives (N bytes expected); reports each step as a JSON line on stdout.
//     When the Rust side calls TestCall{data: "please close"}, it closes the Teleport itself.
//   --heartbeat-ms sets the control extension's heartbeat interval (DXOS's default: 10 s).
//   bench-send: writes N bytes on "bulk" in 64 KiB writes and reports how long it took.
// node interop.mjs --mode bench-js-pair [--bytes N]
//   Two DXOS Teleports over loopback TCP in this process; reports N bytes' throughput one way.

import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { parseArgs } from 'node:util';

import { PublicKey } from '@dxos/keys';
import { schema } from '@dxos/protocols/proto';
import { createProtoRpcPeer } from '@dxos/rpc';
import { Teleport } from '@dxos/teleport';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    peer: { type: 'string' },
    mode: { type: 'string', default: 'interop' },
    bytes: { type: 'string', default: String(10 * 1024 * 1024) },
    'heartbeat-ms': { type: 'string' },
  },
});
const totalBytes = Number(args.bytes);
const WRITE = 64 * 1024;

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

class InteropExtension {
  constructor({ onClosePlease } = {}) {
    this.onClosePlease = onClosePlease;
    this.opened = new Promise((resolve) => (this._resolveOpen = resolve));
  }

  async onOpen(ctx) {
    this.ctx = ctx;
    this.rpc = createProtoRpcPeer({
      port: await ctx.createPort('rpc', { contentType: 'application/x-protobuf; messageType="dxos.rpc.Message"' }),
      requested: { TestService: schema.getService('example.testing.rpc.TestService') },
      exposed: { TestService: schema.getService('example.testing.rpc.TestService') },
      handlers: {
        TestService: {
          testCall: async ({ data }) => {
            emit({ event: 'served', data });
            if (data === 'please close') {
              setTimeout(() => this.onClosePlease?.(), 0);
            }
            return { data: `js echo: ${data}` };
          },
          voidCall: async () => {
            emit({ event: 'served-void' });
          },
        },
      },
      timeout: 10_000,
    });
    this.bulk = await ctx.createStream('bulk', { contentType: 'application/octet-stream' });
    await this.rpc.open();
    this._resolveOpen();
  }

  async onClose(err) {
    emit({ event: 'closed', how: 'close', error: err?.message ?? null });
    await this.rpc?.close();
  }

  async onAbort(err) {
    emit({ event: 'closed', how: 'abort', error: err?.message ?? null });
    await this.rpc?.abort();
  }
}

/** Writes `total` random bytes to `stream` in 64 KiB writes, honouring backpressure; returns their sha256. */
const sendBulk = async (stream, total) => {
  const hash = createHash('sha256');
  let sent = 0;
  while (sent < total) {
    const chunk = randomBytes(Math.min(WRITE, total - sent));
    hash.update(chunk);
    sent += chunk.length;
    if (!stream.write(chunk)) {
      await once(stream, 'drain');
    }
  }
  return hash.digest('hex');
};

/** Resolves with the sha256 of the first `total` bytes read from `stream`. */
const receiveBulk = (stream, total) =>
  new Promise((resolve) => {
    const hash = createHash('sha256');
    let received = 0;
    stream.on('data', (data) => {
      if (received >= total) {
        return;
      }
      hash.update(data);
      received += data.length;
      if (received >= total) {
        resolve({ sha256: hash.digest('hex'), bytes: received });
      }
    });
  });

const connectTeleport = async (socket, { initiator, localPeerId, remotePeerId }) => {
  socket.setNoDelay(true);
  const heartbeat = args['heartbeat-ms'] ? { controlHeartbeatInterval: Number(args['heartbeat-ms']) } : {};
  const teleport = new Teleport({ initiator, localPeerId, remotePeerId, ...heartbeat });
  socket.pipe(teleport.stream).pipe(socket);
  teleport.stream.on('close', () => socket.end());
  await teleport.open(PublicKey.random());
  return teleport;
};

const runAgainstRust = async () => {
  const socket = net.connect(Number(args.port), '127.0.0.1');
  await once(socket, 'connect');
  socket.on('error', (err) => emit({ event: 'socket-error', error: err.message }));
  const socketClosed = once(socket, 'close');
  const teleport = await connectTeleport(socket, {
    initiator: false,
    localPeerId: PublicKey.random(),
    remotePeerId: PublicKey.from(args.peer),
  });
  emit({ event: 'open' });

  const extension = new InteropExtension({
    onClosePlease: async () => {
      await teleport.close();
      emit({ event: 'teleport-closed' });
    },
  });
  teleport.addExtension('mesh.interop', extension);
  await extension.opened;
  emit({ event: 'extension-open' });

  if (args.mode === 'bench-send') {
    const start = process.hrtime.bigint();
    await sendBulk(extension.bulk, totalBytes);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    emit({ event: 'sent', bytes: totalBytes, seconds });
  } else {
    const received = receiveBulk(extension.bulk, totalBytes);
    const answer = await extension.rpc.rpc.TestService.testCall({ data: 'hello from js' });
    emit({ event: 'rpc', answer: answer.data });
    await extension.rpc.rpc.TestService.voidCall();
    emit({ event: 'rpc-void' });
    const sent = await sendBulk(extension.bulk, totalBytes);
    emit({ event: 'sent', sha256: sent, bytes: totalBytes });
    emit({ event: 'received', ...(await received) });
  }
  await socketClosed;
  emit({ event: 'socket-closed' });
};

const runJsPair = async () => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = net.connect(server.address().port, '127.0.0.1');
  await once(client, 'connect');
  const [serverSocket] = await accepted;
  const [a, b] = [PublicKey.random(), PublicKey.random()];
  const [ta, tb] = await Promise.all([
    connectTeleport(client, { initiator: true, localPeerId: a, remotePeerId: b }),
    connectTeleport(serverSocket, { initiator: false, localPeerId: b, remotePeerId: a }),
  ]);
  const [ea, eb] = [new InteropExtension(), new InteropExtension()];
  ta.addExtension('mesh.interop', ea);
  tb.addExtension('mesh.interop', eb);
  await Promise.all([ea.opened, eb.opened]);
  const received = receiveBulk(eb.bulk, totalBytes);
  const start = process.hrtime.bigint();
  await sendBulk(ea.bulk, totalBytes);
  await received;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  emit({ event: 'js-pair', bytes: totalBytes, seconds, mbps: totalBytes / 1e6 / seconds });
  process.exit(0);
};

const main = args.mode === 'bench-js-pair' ? runJsPair : runAgainstRust;
main().then(
  () => process.exit(0),
  (err) => {
    emit({ event: 'error', error: String(err?.stack ?? err) });
    process.exit(1);
  },
);
