// Writes golden byte vectors with the real DXOS 0.8.3 encoders: the protobuf codecs of
// @dxos/protocols and the RPC peer of @dxos/rpc that @dxos/messaging's signal client runs.
// The Rust tests in crates/proto decode every vector and re-encode it to the same bytes.
//
//   node make-vectors.mjs           write vectors/*.hex
//   node make-vectors.mjs --check   fail if vectors/ differs from what the encoders write now

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Stream } from '@dxos/codec-protobuf';
import { PublicKey } from '@dxos/keys';
import { schema } from '@dxos/protocols/proto';
import { createProtoRpcPeer } from '@dxos/rpc';

const vectorsDir = join(dirname(fileURLToPath(import.meta.url)), 'vectors');
const check = process.argv.includes('--check');

const key = (byte) => PublicKey.from(byte.toString(16).padStart(2, '0').repeat(32));
const codec = (type) => schema.getCodecForType(type);
const hex = (bytes) => Buffer.from(bytes).toString('hex');

const topic = key(0x11);
const alice = key(0xa1);
const bob = key(0xb2);
const since = new Date(Date.UTC(2025, 4, 6, 7, 8, 9, 123));

// --- Signal RPC, captured from a real client/server pair of RPC peers ----------------------------

/** An RPC port whose sent messages are collected, and which delivers messages fed to it. */
const capturePort = () => {
  const port = { sent: [], receive: () => {} };
  port.send = async (msg) => port.sent.push(Uint8Array.from(msg));
  port.subscribe = (cb) => {
    port.receive = cb;
  };
  return port;
};

const signalService = schema.getService('dxos.mesh.signal.Signal');
const nextTick = () => new Promise((resolve) => setTimeout(resolve, 10));

// The client is configured as @dxos/messaging's SignalRPCClient configures it.
const clientPort = capturePort();
const client = createProtoRpcPeer({
  requested: { Signal: signalService },
  noHandshake: true,
  port: clientPort,
  encodingOptions: { preserveAny: true },
});

// A server answering Join with one PeerAvailable, and SendMessage with Empty.
const serverPort = capturePort();
const server = createProtoRpcPeer({
  exposed: { Signal: signalService },
  handlers: {
    Signal: {
      join: () =>
        new Stream(({ ready, next }) => {
          ready();
          next({ peerAvailable: { peer: bob.asUint8Array(), since } });
        }),
      receiveMessages: () => new Stream(({ ready }) => ready()),
      sendMessage: async () => {},
    },
  },
  noHandshake: true,
  port: serverPort,
  encodingOptions: { preserveAny: true },
});
await client.open();
await server.open();

client.rpc.Signal.join({
  swarm: topic.asUint8Array(),
  peer: alice.asUint8Array(),
  metadata: { version: '0.8.3', agent: 'golden' },
});
await nextTick();
const [joinRequest] = clientPort.sent;
serverPort.receive(joinRequest);
await nextTick();
const [streamReady, peerAvailable] = serverPort.sent;

// --- A swarm offer carried reliably, as the swarm messenger and Messenger wrap it -----------------

const swarmMessage = {
  topic,
  sessionId: key(0x5e),
  messageId: key(0x6d),
  data: {
    signalBatch: {
      signals: [
        { payload: { data: { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' } } },
        {
          payload: {
            data: {
              type: 'candidate',
              candidate: { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host', sdpMLineIndex: 0, sdpMid: '0' },
            },
          },
        },
        { payload: { port: 40123 } },
      ],
    },
  },
};
const reliablePayload = {
  messageId: key(0x7c),
  payload: { type_url: 'dxos.mesh.swarm.SwarmMessage', value: codec('dxos.mesh.swarm.SwarmMessage').encode(swarmMessage) },
};
const signalMessage = {
  author: alice.asUint8Array(),
  recipient: bob.asUint8Array(),
  payload: {
    '@type': 'google.protobuf.Any',
    type_url: 'dxos.mesh.messaging.ReliablePayload',
    value: codec('dxos.mesh.messaging.ReliablePayload').encode(reliablePayload, { preserveAny: true }),
  },
};
const acknowledgement = {
  author: bob.asUint8Array(),
  recipient: alice.asUint8Array(),
  payload: {
    '@type': 'google.protobuf.Any',
    type_url: 'dxos.mesh.messaging.Acknowledgement',
    value: codec('dxos.mesh.messaging.Acknowledgement').encode({ messageId: key(0x7c) }),
  },
};

clientPort.sent.length = 0;
serverPort.sent.length = 0;
const sent = client.rpc.Signal.sendMessage(signalMessage);
await nextTick();
const [sendRequest] = clientPort.sent;
serverPort.receive(sendRequest);
await nextTick();
const [sendReply] = serverPort.sent;
clientPort.receive(sendReply);
await sent;

// --- Teleport: the first muxer command a DXOS peer sends ------------------------------------------

const openChannel = codec('dxos.mesh.muxer.Command').encode({
  openChannel: {
    id: 1,
    tag: 'dxos.mesh.teleport.control/rpc',
    contentType: 'application/x-protobuf; messageType="dxos.rpc.Message"',
  },
});
// The bytes observed on the wire (MESH-SPEC §6): u16 frame length, balancer channel 0, varint length.
const observedFirstFrame =
  '005e005c0a5a0801121e' +
  Buffer.from('dxos.mesh.teleport.control/rpc').toString('hex') +
  '1a36' +
  Buffer.from('application/x-protobuf; messageType="dxos.rpc.Message"').toString('hex');
if (hex(openChannel) !== observedFirstFrame.slice(8)) {
  throw new Error('OpenChannel encoding differs from the bytes observed on the wire');
}

const heartbeat = codec('dxos.mesh.teleport.control.ControlHeartbeatRequest').encode({ requestTimestamp: since });
const gossip = codec('dxos.mesh.teleport.gossip.GossipMessage').encode({
  peerId: alice,
  channelId: 'dxos.mesh.presence.Presence',
  messageId: key(0x42),
  timestamp: since,
  payload: {
    '@type': 'dxos.mesh.presence.PeerState',
    connections: [bob],
    identityKey: key(0x1d),
    peerId: alice,
  },
});

// Each vector: file name → [protobuf type the Rust test decodes it as, bytes].
const vectors = {
  'rpc-request-join': ['dxos.rpc.RpcMessage', joinRequest],
  'rpc-response-stream-ready': ['dxos.rpc.RpcMessage', streamReady],
  'rpc-response-peer-available': ['dxos.rpc.RpcMessage', peerAvailable],
  'rpc-request-send-message': ['dxos.rpc.RpcMessage', sendRequest],
  'rpc-response-empty': ['dxos.rpc.RpcMessage', sendReply],
  'signal-message-reliable-swarm': ['dxos.mesh.signal.Message', codec('dxos.mesh.signal.Message').encode(signalMessage, { preserveAny: true })],
  'signal-message-acknowledgement': ['dxos.mesh.signal.Message', codec('dxos.mesh.signal.Message').encode(acknowledgement, { preserveAny: true })],
  'muxer-open-channel': ['dxos.mesh.muxer.Command', openChannel],
  'teleport-first-frame': ['frame', Buffer.from(observedFirstFrame, 'hex')],
  'control-heartbeat-request': ['dxos.mesh.teleport.control.ControlHeartbeatRequest', heartbeat],
  'gossip-presence': ['dxos.mesh.teleport.gossip.GossipMessage', gossip],
};

const render = ([type, bytes]) => `# ${type}\n${hex(bytes)}\n`;
let stale = [];
for (const [name, vector] of Object.entries(vectors)) {
  const path = join(vectorsDir, `${name}.hex`);
  if (check) {
    let committed = '';
    try {
      committed = readFileSync(path, 'utf8');
    } catch {}
    if (committed !== render(vector)) stale.push(name);
  } else {
    writeFileSync(path, render(vector));
  }
}
const extra = readdirSync(vectorsDir).filter((file) => !(file.replace(/\.hex$/, '') in vectors));
stale = stale.concat(extra.map((file) => `${file} (not written by this script)`));
if (check && stale.length > 0) {
  console.error(`golden vectors differ from the DXOS 0.8.3 encoders: ${stale.join(', ')}`);
  process.exit(1);
}
console.log(`${check ? 'checked' : 'wrote'} ${Object.keys(vectors).length} golden vectors`);
process.exit(0);
