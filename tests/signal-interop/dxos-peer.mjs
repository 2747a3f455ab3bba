// A DXOS 0.8.3 signaling peer (WebsocketSignalManager + Messenger from @dxos/messaging), driven
// by JSON lines on stdin and reporting JSON lines on stdout. The Rust interop tests run it against
// mesh's signal server.
//
//   node dxos-peer.mjs ws://127.0.0.1:PORT/.well-known/dx/signal [more URLs...]
//
// Commands (stdin):  {"cmd":"join","topic":HEX}  {"cmd":"leave","topic":HEX}
//                    {"cmd":"send","to":HEX,"text":STRING}  {"cmd":"exit"}
// Events (stdout):   {"event":"ready","peer":HEX}
//                    {"event":"peer-available","topic":HEX,"peer":HEX}  {"event":"peer-left",...}
//                    {"event":"message","from":HEX,"text":STRING}
//                    {"event":"delivered","text":STRING}  {"event":"send-failed","text":STRING,"error":STRING}

import { createInterface } from 'node:readline';

import { PublicKey } from '@dxos/keys';
import { Messenger, WebsocketSignalManager } from '@dxos/messaging';

const urls = process.argv.slice(2);
if (urls.length === 0) {
  console.error('usage: node dxos-peer.mjs URL...');
  process.exit(2);
}

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');
const me = PublicKey.random();
const manager = new WebsocketSignalManager(urls.map((server) => ({ server })));
await manager.open();
const messenger = new Messenger({ signalManager: manager });

manager.swarmEvent.on(({ topic, peerAvailable, peerLeft }) => {
  if (peerAvailable) {
    emit({ event: 'peer-available', topic: topic.toHex(), peer: peerAvailable.peer.peerKey });
  } else if (peerLeft) {
    emit({ event: 'peer-left', topic: topic.toHex(), peer: peerLeft.peer.peerKey });
  }
});

await messenger.listen({
  peer: { peerKey: me.toHex() },
  onMessage: async ({ author, payload }) => {
    emit({ event: 'message', from: author.peerKey, text: Buffer.from(payload.value).toString('utf8') });
  },
});

const commands = {
  join: ({ topic }) => manager.join({ topic: PublicKey.from(topic), peer: { peerKey: me.toHex() } }),
  leave: ({ topic }) => manager.leave({ topic: PublicKey.from(topic), peer: { peerKey: me.toHex() } }),
  send: ({ to, text }) => {
    // Reliable: resolves on the recipient's acknowledgement, fails after 10 s.
    messenger
      .sendMessage({
        author: { peerKey: me.toHex() },
        recipient: { peerKey: to },
        payload: { type_url: 'mesh.test.Text', value: Buffer.from(text, 'utf8') },
      })
      .then(() => emit({ event: 'delivered', text }))
      .catch((err) => emit({ event: 'send-failed', text, error: String(err?.message ?? err) }));
  },
  exit: async () => {
    await messenger.close();
    await manager.close();
    process.exit(0);
  },
};

const input = createInterface({ input: process.stdin });
input.on('line', async (line) => {
  try {
    const command = JSON.parse(line);
    await commands[command.cmd](command);
  } catch (err) {
    emit({ event: 'error', error: String(err?.message ?? err), line });
  }
});
// The test closing stdin means it is done with this peer.
input.on('close', () => commands.exit());

emit({ event: 'ready', peer: me.toHex() });
