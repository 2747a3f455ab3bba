// A DXOS 0.8.3 swarm peer: SwarmNetworkManager with the TCP transport, a fully connected topology
// and Teleport with the test extension "mesh.hello", driven by the Rust mixed-swarm test.
//
//   node dxos-swarm-peer.mjs SIGNAL_URL TOPIC_HEX
//
// The extension opens port "hello" and sends this peer's key (hex); the remote's key arriving on it
// is reported. Events (stdout, JSON lines):
//   {"event":"ready","peer":HEX}   {"event":"hello","from":HEX}   {"event":"closed","remote":HEX}
// Closing stdin leaves the swarm and exits.

import { createInterface } from 'node:readline';

import { PublicKey } from '@dxos/keys';
import { WebsocketSignalManager } from '@dxos/messaging';
import { FullyConnectedTopology, SwarmNetworkManager, createTeleportProtocolFactory } from '@dxos/network-manager';
import { TcpTransportFactory } from '@dxos/network-manager/transport/tcp';

const [url, topicHex] = process.argv.slice(2);
if (!url || !topicHex) {
  console.error('usage: node dxos-swarm-peer.mjs SIGNAL_URL TOPIC_HEX');
  process.exit(2);
}

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const me = PublicKey.random();

class HelloExtension {
  constructor(remote) {
    this.remote = remote;
  }

  async onOpen(ctx) {
    const port = await ctx.createPort('hello', { contentType: 'application/octet-stream' });
    port.subscribe((message) => emit({ event: 'hello', from: Buffer.from(message).toString('utf8') }));
    await port.send(Buffer.from(me.toHex(), 'utf8'));
  }

  async onClose() {
    emit({ event: 'closed', remote: this.remote });
  }

  async onAbort() {
    emit({ event: 'closed', remote: this.remote });
  }
}

const networkManager = new SwarmNetworkManager({
  transportFactory: TcpTransportFactory,
  signalManager: new WebsocketSignalManager([{ server: url }]),
  peerInfo: { peerKey: me.toHex(), identityKey: me.toHex() },
});
await networkManager.open();
const swarm = await networkManager.joinSwarm({
  topic: PublicKey.from(topicHex),
  topology: new FullyConnectedTopology(),
  protocolProvider: createTeleportProtocolFactory(async (teleport) => {
    teleport.addExtension('mesh.hello', new HelloExtension(teleport.remotePeerId.toHex()));
  }),
});
emit({ event: 'ready', peer: me.toHex() });

createInterface({ input: process.stdin }).on('close', async () => {
  await swarm.close();
  await networkManager.close();
  process.exit(0);
});
