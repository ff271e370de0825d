// Loading the wasm module once, in browsers, Workers and Node, and small environment helpers.

import init from "./wasm/browser_llm.js";

export const isNode = typeof process !== "undefined" && !!(process.versions && process.versions.node);

let ready = null;

/** Instantiate the wasm module (once). */
export function loadWasm() {
  if (!ready) {
    ready = (async () => {
      const url = new URL("./wasm/browser_llm_bg.wasm", import.meta.url);
      if (isNode) {
        const fs = await nodeImport("node:fs/promises");
        await init({ module_or_path: await fs.readFile(url) });
      } else {
        await init({ module_or_path: url });
      }
    })();
    ready.catch(() => { ready = null; });
  }
  return ready;
}

/** Import a Node built-in without bundlers trying to resolve it for the browser. */
export function nodeImport(name) {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ name);
}

/** Let the event loop run (abort messages, rendering) between generation steps. */
export function yieldToEventLoop() {
  if (isNode) return new Promise((r) => setImmediate(r));
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
    ch.port2.postMessage(null);
  });
}
