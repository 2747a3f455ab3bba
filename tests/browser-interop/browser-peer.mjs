// Runs real DXOS 0.8.3 peers (page/peer.js) in headless Chromium, one tab per peer, using DXOS's
// browser WebRTC transport, driven by the Rust browser-interop tests.
//
//   node browser-peer.mjs SIGNAL_URL TOPIC_HEX [--peer HEX]... [--topology full|star:HEX]
//                         [--ice JSON] [--all-candidates]
//
// Each --peer opens a tab with that peer key at start. --ice gives the pages RTCIceServer[] (JSON);
// by default they have none. Pages send only their UDP host candidates on 127.0.0.1/::1 (and any
// from ICE servers); --all-candidates: every candidate Chromium gathers. Output (stdout, one JSON object a line):
//   {"event":"browser","version":...}                  once Chromium is up
//   {"event":"opened","tab":N,"peer":HEX}              a tab was opened (by --peer or `open`)
//   {"event":"ready"|"hello"|"closed"|"error",...,"tab":N}   from the page (see page/peer.js)
// Commands (stdin, one a line):
//   open PEER_HEX [TOPOLOGY]   open a new tab (default topology: that of --topology)
//   reload N                   reload tab N (same URL, so the same peer key)
//   leave N                    tab N leaves the swarm gracefully (then {"event":"left"}); the tab stays
//   close N                    close tab N (abruptly for its peers: they see "closed" only after
//                              DXOS's timeouts, about 15-20 s)
// Closing stdin closes the browser and exits 0. Failing to start Chromium exits non-zero.
//
// MESH_BROWSER_DEBUG=1 forwards all console output of the tabs to stderr, including the SDP and
// ICE candidates (the page logs them with debug=1). MESH_BROWSER_DXLOG=FILTER (e.g. "debug" or
// "network-manager:debug") turns on DXOS's own logging in the pages (seen with MESH_BROWSER_DEBUG=1).

import { constants, accessSync } from 'node:fs';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';

import { bundle } from './bundle.mjs';

const CHROMIUM = process.env.MESH_CHROMIUM ?? '/usr/bin/chromium';
const debug = process.env.MESH_BROWSER_DEBUG === '1';
const dxlog = process.env.MESH_BROWSER_DXLOG;

const fail = (message) => {
  console.error(`browser-peer: ${message}`);
  process.exit(1);
};

// --- arguments
const usage = 'usage: node browser-peer.mjs SIGNAL_URL TOPIC_HEX [--peer HEX]... [--topology full|star:HEX] [--ice JSON] [--all-candidates]';
const positional = [];
const initialPeers = [];
let defaultTopology = 'full';
let ice;
let allCandidates = false;
for (let args = process.argv.slice(2); args.length > 0; ) {
  const arg = args.shift();
  if (arg === '--all-candidates') {
    allCandidates = true;
  } else if (arg === '--peer' || arg === '--topology' || arg === '--ice') {
    const value = args.shift();
    if (value === undefined) {
      fail(`${arg} needs a value\n${usage}`);
    }
    if (arg === '--peer') initialPeers.push(value);
    if (arg === '--topology') defaultTopology = value;
    if (arg === '--ice') ice = value;
  } else if (arg.startsWith('--')) {
    fail(`unknown option ${arg}\n${usage}`);
  } else {
    positional.push(arg);
  }
}
const [signalUrl, topic] = positional;
if (!signalUrl || !topic || positional.length > 2) {
  console.error(usage);
  process.exit(2);
}
try {
  accessSync(CHROMIUM, constants.X_OK);
} catch {
  fail(`no Chromium at ${CHROMIUM} (install it with: apt-get install -y chromium)`);
}

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

// --- the page's bundle and an HTTP server for it
const started = Date.now();
let files;
try {
  files = await bundle();
} catch (err) {
  fail(`bundling page/peer.js failed: ${err.message}`);
}
const bundled = Date.now();

// A classic script runs before the module, so DXOS's log config is in localStorage before @dxos/log
// reads it.
const html = `<!doctype html>
<meta charset="utf-8">
<title>mesh browser peer</title>
<link rel="icon" href="data:,">
<script>
  const dxlog = new URLSearchParams(location.search).get('dxlog');
  if (dxlog) localStorage.setItem('dxlog', JSON.stringify({ filter: dxlog }));
</script>
<script type="module" src="/peer.js"></script>
`;
const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const file = path === '/' ? html : files[path.slice(1)];
  if (file === undefined) {
    res.writeHead(404).end();
    return;
  }
  const type = path === '/' ? 'text/html' : path.endsWith('.js') ? 'text/javascript' : 'application/json';
  res.writeHead(200, { 'content-type': `${type}; charset=utf-8`, 'cache-control': 'no-store' }).end(file);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

// --- Chromium
let browser;
let closing = false;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    // Playwright adds most of these itself; they are listed so that the needs are plain here.
    args: [
      '--no-sandbox', // Chromium's sandbox does not work here (root, no user namespaces).
      '--disable-gpu',
      '--disable-dev-shm-usage',
      // No calls to Google services (there is no network but loopback: they only fail noisily).
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
      // WebRTC: let pages gather host candidates on the loopback interface (127.0.0.1, ::1). This
      // takes effect only for pages that have camera/microphone permission (granted below); the
      // permission also stops Chromium from hiding local addresses behind random .local mDNS
      // names, which a mesh peer cannot resolve. (--disable-features=WebRtcHideLocalIpsWithMdns is
      // not used: Chromium honours only the last --disable-features, so it would undo Playwright's.)
      '--allow-loopback-in-peer-connection',
    ],
  });
} catch (err) {
  server.close();
  fail(`launching ${CHROMIUM} failed: ${err.message}`);
}
browser.on('disconnected', () => {
  if (!closing) fail('Chromium went away');
});
emit({ event: 'browser', version: browser.version() });
if (debug) {
  console.error(`browser-peer: bundled in ${bundled - started} ms, Chromium up in ${Date.now() - bundled} ms`);
}
const context = await browser.newContext();
// See --allow-loopback-in-peer-connection above.
await context.grantPermissions(['camera', 'microphone'], { origin });

// --- tabs
const tabs = [];

const openTab = async (peer, topology = defaultTopology) => {
  const tab = tabs.length;
  const query = new URLSearchParams({ signal: signalUrl, topic, peer, topology });
  if (ice) query.set('ice', ice);
  if (allCandidates) query.set('candidates', 'all');
  if (debug) query.set('debug', '1');
  if (dxlog) query.set('dxlog', dxlog);
  const page = await context.newPage();
  tabs.push(page);
  page.on('console', (msg) => {
    const text = msg.text();
    if (text.startsWith('MESH_EVENT ')) {
      emit({ ...JSON.parse(text.slice('MESH_EVENT '.length)), tab });
    } else if (debug || msg.type() === 'error') {
      console.error(`[tab ${tab}] ${msg.type()}: ${text}`);
    }
  });
  page.on('pageerror', (err) => emit({ event: 'error', where: 'pageerror', message: err.message, tab }));
  page.on('crash', () => emit({ event: 'error', where: 'crash', message: 'the tab crashed', tab }));
  emit({ event: 'opened', tab, peer });
  await page.goto(`${origin}/?${query}`);
};

const command = async (line) => {
  const [verb, arg, topology] = line.trim().split(/\s+/);
  const page = tabs[Number(arg)];
  if (verb === 'open' && arg) {
    await openTab(arg, topology);
  } else if (verb === 'reload' && page) {
    await page.reload();
  } else if (verb === 'leave' && page) {
    await page.evaluate(() => window.meshLeave());
  } else if (verb === 'close' && page) {
    await page.close();
  } else if (verb) {
    emit({ event: 'error', where: 'command', message: `bad command: ${line}` });
  }
};

const shutdown = async () => {
  closing = true;
  await browser.close().catch(() => {});
  server.close();
  process.exit(0);
};

// Commands run one at a time, in order.
let queue = Promise.resolve();
const run = (fn) => {
  queue = queue.then(fn).catch((err) => emit({ event: 'error', where: 'command', message: err.message }));
};
for (const peer of initialPeers) {
  run(() => openTab(peer));
}
createInterface({ input: process.stdin })
  .on('line', (line) => run(() => command(line)))
  .on('close', () => run(shutdown));

