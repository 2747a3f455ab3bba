// A DXOS 0.8.3 swarm peer running DXOS's own gossip and presence (`@dxos/teleport-extension-gossip`)
// over SwarmNetworkManager with the TCP transport and a fully connected topology, driven by the
// Rust extension interop test.
//
//   node dxos-gossip-peer.mjs SIGNAL_URL TOPIC_HEX
//
// Commands (stdin, one per line): `post TEXT` posts TEXT on gossip channel "chat" as a
// google.protobuf.Any of type "mesh.test.Text". Events (stdout, JSON lines):
//   {"event":"ready","peer":HEX}
//   {"event":"gossip","origin":HEX,"text":TEXT}          a chat message arrived
//   {"event":"presence","online":[HEX...]}              presence changed: who is online now
// Closing stdin leaves the swarm and exits.

import { createInterface } from 'node:readline';

import { PublicKey } from '@dxos/keys';
import { WebsocketSignalManager } from '@dxos/messaging';
import { FullyConnectedTopology, SwarmNetworkManager, createTeleportProtocolFactory } from '@dxos/network-manager';
import { TcpTransportFactory } from '@dxos/network-manager/transport/tcp';
import { Gossip, Presence } from '@dxos/teleport-extension-gossip';

const [url, topicHex] = process.argv.slice(2);
if (!url || !topicHex) {
  console.error('usage: node dxos-gossip-peer.mjs SIGNAL_URL TOPIC_HEX');
  process.exit(2);
}

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const me = PublicKey.random();
const TEXT_TYPE = 'mesh.test.Text';

const gossip = new Gossip({ localPeerId: me });
await gossip.open();
const presence = new Presence({ announceInterval: 200, offlineTimeout: 3000, identityKey: me, gossip });
await presence.open();

gossip.listen('chat', (message) => {
  const payload = message.payload;
  if (payload?.type_url === TEXT_TYPE) {
    emit({ event: 'gossip', origin: message.peerId.toHex(), text: Buffer.from(payload.value).toString('utf8') });
  }
});
let lastOnline = '';
presence.updated.on(() => {
  const online = presence
    .getPeersOnline()
    .map((state) => state.peerId?.toHex())
    .filter(Boolean)
    .sort();
  const text = JSON.stringify(online);
  if (text !== lastOnline) {
    lastOnline = text;
    emit({ event: 'presence', online });
  }
});

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
    teleport.addExtension('dxos.mesh.teleport.gossip', gossip.createExtension({ remotePeerId: teleport.remotePeerId }));
  }),
});
emit({ event: 'ready', peer: me.toHex() });

const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (line.startsWith('post ')) {
    const value = Buffer.from(line.slice('post '.length), 'utf8');
    gossip.postMessage('chat', { '@type': 'google.protobuf.Any', type_url: TEXT_TYPE, value });
  }
});
input.on('close', async () => {
  await swarm.close();
  await networkManager.close();
  await presence.close();
  await gossip.close();
  process.exit(0);
});
