// Bundles page/peer.js (a DXOS 0.8.3 peer) for the browser with esbuild.
//
// The driver (browser-peer.mjs) calls bundle() on start and serves the result from memory, so tests
// running side by side never race on a shared output file and never see a stale bundle (it takes
// about a second). `node bundle.mjs` writes the same bundle to dist/ (git-ignored) to look at.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

/** Returns { 'peer.js': Uint8Array, 'peer.js.map': Uint8Array }. */
export const bundle = async () => {
  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: ['page/peer.js'],
    outfile: 'dist/peer.js',
    write: false,
    bundle: true,
    format: 'esm',
    target: 'es2022',
    sourcemap: 'linked',
    // The DXOS packages have `browser` entry points: these import their Node built-ins from
    // @dxos/node-std (buffer, stream, util, events, ...), and map `#node-datachannel` to an
    // empty module-stub.mjs (the browser transport uses the page's own RTCPeerConnection).
    // Third-party CommonJS dependencies that require('buffer'/'events'/'util') get the npm
    // packages of those names, which are in node_modules as dependencies of @dxos/node-std.
    platform: 'browser',
    conditions: ['browser'],
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  // esbuild keeps a helper process for further builds; there are none.
  await esbuild.stop();
  return Object.fromEntries(result.outputFiles.map((file) => [file.path.split('/').pop(), file.contents]));
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const files = await bundle();
  for (const [name, contents] of Object.entries(files)) {
    const path = join(here, 'dist', name);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, contents);
  }
  console.error(`bundled into dist/ in ${Date.now() - started} ms`);
}
