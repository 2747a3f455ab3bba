// A DXOS 0.8.3 swarm peer running in the browser: SwarmNetworkManager with the browser WebRTC
// transport (the page's own RTCPeerConnection), the signal server at `signal`, and Teleport with the
// test extension "mesh.hello" (as in tests/swarm-interop/dxos-swarm-peer.mjs).
//
// Parameters come from the URL query:
//   signal=ws://...           the signal server
//   topic=HEX                 the swarm topic
//   peer=HEX                  this peer's key (also its identity key)
//   topology=full|star:HEX    fully connected (default) or a star around the peer HEX
//   ice=JSON                  optional RTCIceServer[] (default: none, host candidates only)
//   candidates=loopback|all   send only UDP host candidates on 127.x/::1 (default), or all of them
//   debug=1                   log SDP and ICE candidates to the console
//
// Events go to the console as `MESH_EVENT {json}`; the driver (browser-peer.mjs) picks them up:
//   {"event":"ready","peer":HEX}  {"event":"hello","from":HEX}  {"event":"closed","remote":HEX}
//   {"event":"left","peer":HEX}   (after window.meshLeave(): this peer left the swarm)
//   {"event":"error","where":"main","message":...}   (the driver reports uncaught errors itself)

// Must come first: Buffer, process and global, which the DXOS packages expect as globals.
import '@dxos/node-std/globals';

import { PublicKey } from '@dxos/keys';
import { WebsocketSignalManager } from '@dxos/messaging';
import {
  FullyConnectedTopology,
  StarTopology,
  SwarmNetworkManager,
  createRtcTransportFactory,
  createTeleportProtocolFactory,
} from '@dxos/network-manager';

const emit = (event) => console.log('MESH_EVENT ' + JSON.stringify(event));

const errorEvent = (where, err) =>
  emit({ event: 'error', where, message: String(err?.message ?? err), stack: err?.stack });

const params = new URLSearchParams(location.search);
const signal = params.get('signal');
const topic = params.get('topic');
const peer = params.get('peer');
const topology = params.get('topology') ?? 'full';
const iceServers = params.has('ice') ? JSON.parse(params.get('ice')) : [];
const candidates = params.get('candidates') ?? 'loopback';
const debug = params.get('debug') === '1';

// Wrap RTCPeerConnection (DXOS creates it with `new RTCPeerConnection(config)`) to keep the ICE
// candidates sent to remote peers on the loopback interface, and with debug=1 to log what goes over
// the signal server: our SDP and candidates and the remote's.
//
// Chromium gathers host candidates on every interface (127.0.0.1 and ::1 too, as the driver allows
// it); the tests want only loopback ones over UDP, so that no traffic is addressed to the machine's
// other addresses. Candidates from ICE servers (srflx, relay) are left alone. DXOS sets
// `onicecandidate` as a property (Object.assign), so a setter can filter what it is given.
const keepCandidate = (candidate) => {
  // candidate:FOUNDATION COMPONENT PROTOCOL PRIORITY ADDRESS PORT typ TYPE ...
  const [, , protocol, , address, , , type] = candidate.split(' ');
  const loopback = address.startsWith('127.') || address === '::1';
  return type !== 'host' || (protocol.toLowerCase() === 'udp' && loopback);
};
const NativeRTCPeerConnection = window.RTCPeerConnection;
window.RTCPeerConnection = class extends NativeRTCPeerConnection {
  constructor(config) {
    super(config);
    if (debug) {
      console.log('rtc: new RTCPeerConnection', JSON.stringify(config));
      this.addEventListener('connectionstatechange', async () => {
        console.log('rtc: state', this.connectionState);
        if (this.connectionState === 'connected') {
          // Which addresses ICE chose: the nominated pair of the transport.
          const stats = [...(await this.getStats()).values()];
          const transport = stats.find((s) => s.type === 'transport');
          const pair = stats.find((s) => s.id === transport?.selectedCandidatePairId);
          const describe = (id) => {
            const c = stats.find((s) => s.id === id);
            // Chromium leaves out the address of a remote peer-reflexive candidate.
            return c ? `${c.candidateType} ${c.address ?? '?'} ${c.port}` : '?';
          };
          console.log(`rtc: selected pair ${describe(pair?.localCandidateId)} -> ${describe(pair?.remoteCandidateId)}`);
        }
      });
    }
  }

  set onicecandidate(handler) {
    super.onicecandidate = (event) => {
      const candidate = event.candidate?.candidate;
      const send = !candidate || candidates === 'all' || keepCandidate(candidate);
      if (debug) {
        console.log(`rtc: local candidate${send ? '' : ' (not sent)'}`, candidate ?? '(gathering done)');
      }
      if (send) {
        return handler?.call(this, event);
      }
    };
  }

  get onicecandidate() {
    return super.onicecandidate;
  }

  async setLocalDescription(desc) {
    await super.setLocalDescription(desc);
    if (debug) console.log('rtc: local sdp\n' + this.localDescription?.sdp);
  }

  async setRemoteDescription(desc) {
    if (debug) console.log('rtc: remote sdp\n' + desc?.sdp);
    return super.setRemoteDescription(desc);
  }

  async addIceCandidate(candidate) {
    if (debug) console.log('rtc: remote candidate', candidate?.candidate);
    return super.addIceCandidate(candidate);
  }
};

const utf8 = { encode: (s) => new TextEncoder().encode(s), decode: (b) => new TextDecoder().decode(b) };

class HelloExtension {
  constructor(remote) {
    this.remote = remote;
  }

  async onOpen(ctx) {
    const port = await ctx.createPort('hello', { contentType: 'application/octet-stream' });
    port.subscribe((message) => emit({ event: 'hello', from: utf8.decode(message) }));
    await port.send(utf8.encode(peer));
  }

  async onClose() {
    emit({ event: 'closed', remote: this.remote });
  }

  async onAbort() {
    emit({ event: 'closed', remote: this.remote });
  }
}

const makeTopology = (spec) => {
  if (spec === 'full') {
    return new FullyConnectedTopology();
  }
  if (spec.startsWith('star:')) {
    return new StarTopology(PublicKey.from(spec.slice('star:'.length)));
  }
  throw new Error(`unknown topology: ${spec}`);
};

const main = async () => {
  if (!signal || !topic || !peer) {
    throw new Error('the page needs signal=, topic= and peer= in its query');
  }
  const networkManager = new SwarmNetworkManager({
    // Browser RTCPeerConnection: getRtcConnectionFactory() picks it because it is a global here.
    transportFactory: createRtcTransportFactory({ iceServers }),
    signalManager: new WebsocketSignalManager([{ server: signal }]),
    peerInfo: { peerKey: peer, identityKey: peer },
  });
  await networkManager.open();
  const swarm = await networkManager.joinSwarm({
    topic: PublicKey.from(topic),
    topology: makeTopology(topology),
    protocolProvider: createTeleportProtocolFactory(async (teleport) => {
      teleport.addExtension('mesh.hello', new HelloExtension(teleport.remotePeerId.toHex()));
    }),
  });
  // A graceful leave (the driver's `leave N`): remote peers see their connection close at once,
  // whereas closing the tab leaves them to notice by a timeout (DXOS keeps established connections
  // when the signal server says a peer left).
  window.meshLeave = async () => {
    await swarm.close();
    await networkManager.close();
    emit({ event: 'left', peer });
  };
  emit({ event: 'ready', peer });
};

main().catch((err) => errorEvent('main', err));
