// Swarm formation time of N DXOS 0.8.3 peers in one Node process, for `cargo xtask bench swarm`.
//
//   node bench-swarm.mjs SIGNAL_URL TOPIC_HEX N [TIMEOUT_MS]
//
// Every peer has its own WebsocketSignalManager and SwarmNetworkManager (TCP transport, fully
// connected topology, Teleport with the "mesh.hello" extension of dxos-swarm-peer.mjs). All
// managers are opened and given 500 ms to settle; then all peers join at once, and the figure is
// the time from the start of the joins until every peer has heard a hello from every other. A
// two-peer warm-up swarm on another topic runs first. Prints {"event":"start"} just before the
// joins, then one JSON line with the figure:
//   {"n":N,"ms":FLOAT,"cpu_ms":FLOAT,"pairs":HEARD,"expected":N*(N-1)}            on success
//   {"n":N,"error":"timeout","ms":FLOAT,"cpu_ms":FLOAT,"pairs":HEARD,"expected":E}  when TIMEOUT_MS passed
// cpu_ms is the Node process's CPU time (user + system, all threads) over the same interval.

import { performance } from 'node:perf_hooks';

import { PublicKey } from '@dxos/keys';
import { WebsocketSignalManager } from '@dxos/messaging';
import { FullyConnectedTopology, SwarmNetworkManager, createTeleportProtocolFactory } from '@dxos/network-manager';
import { TcpTransportFactory } from '@dxos/network-manager/transport/tcp';

const [url, topicHex, countText, timeoutText] = process.argv.slice(2);
const n = Number(countText);
const timeoutMs = Number(timeoutText ?? 30000);
if (!url || !topicHex || !(n >= 2)) {
  console.error('usage: node bench-swarm.mjs SIGNAL_URL TOPIC_HEX N [TIMEOUT_MS]');
  process.exit(2);
}

class HelloExtension {
  constructor(own, onHello) {
    this.own = own;
    this.onHello = onHello;
  }

  async onOpen(ctx) {
    const port = await ctx.createPort('hello', { contentType: 'application/octet-stream' });
    port.subscribe((message) => this.onHello(`${this.own}:${Buffer.from(message).toString('utf8')}`));
    await port.send(Buffer.from(this.own, 'utf8'));
  }

  async onClose() {}

  async onAbort() {}
}

// `count` opened peers, each with its own signal connection.
const openPeers = async (count) => {
  const peers = [];
  for (let i = 0; i < count; i++) {
    const key = PublicKey.random();
    const manager = new SwarmNetworkManager({
      transportFactory: TcpTransportFactory,
      signalManager: new WebsocketSignalManager([{ server: url }]),
      peerInfo: { peerKey: key.toHex(), identityKey: key.toHex() },
    });
    peers.push({ key, manager });
  }
  await Promise.all(peers.map(({ manager }) => manager.open()));
  return peers;
};

const joinAll = (peers, topic, onHello) =>
  Promise.all(
    peers.map(({ key, manager }) =>
      manager.joinSwarm({
        topic,
        topology: new FullyConnectedTopology(),
        protocolProvider: createTeleportProtocolFactory(async (teleport) => {
          teleport.addExtension('mesh.hello', new HelloExtension(key.toHex(), onHello));
        }),
      }),
    ),
  );

const closeAll = async (peers, swarms) => {
  for (const swarm of await swarms) {
    await swarm.close();
  }
  await Promise.all(peers.map(({ manager }) => manager.close()));
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Warm-up: two peers form a swarm on a topic of their own first, so the measured round runs
// JIT-compiled code as a long-lived DXOS process would.
{
  const peers = await openPeers(2);
  const heard = new Set();
  let warm;
  const formed = new Promise((resolve) => {
    warm = resolve;
  });
  const swarms = joinAll(peers, PublicKey.random(), (pair) => {
    heard.add(pair);
    if (heard.size === 2) {
      warm();
    }
  });
  await Promise.race([formed, sleep(timeoutMs)]);
  await Promise.race([closeAll(peers, swarms), sleep(3000)]);
}

const expected = n * (n - 1);
const heard = new Set();
let start = 0;
let done;
const allHeard = new Promise((resolve) => {
  done = resolve;
});

const peers = await openPeers(n);
await sleep(500);

const topic = PublicKey.from(topicHex);
process.stdout.write(JSON.stringify({ event: 'start' }) + '\n');
const cpuBefore = process.cpuUsage();
start = performance.now();
const swarms = joinAll(peers, topic, (pair) => {
  heard.add(pair);
  if (heard.size === expected) {
    done(performance.now() - start);
  }
});
const timeout = new Promise((resolve) => setTimeout(() => resolve(null), timeoutMs));
const ms = await Promise.race([allHeard, timeout]);
const cpu = process.cpuUsage(cpuBefore);
const cpuMs = (cpu.user + cpu.system) / 1e3;
const result =
  ms === null
    ? { n, error: 'timeout', ms: performance.now() - start, cpu_ms: cpuMs, pairs: heard.size, expected }
    : { n, ms, cpu_ms: cpuMs, pairs: heard.size, expected };
process.stdout.write(JSON.stringify(result) + '\n');

// Leave politely, but do not let a slow teardown hold the figure back.
setTimeout(() => process.exit(0), 3000).unref();
try {
  await closeAll(peers, swarms);
} catch {}
process.exit(0);
