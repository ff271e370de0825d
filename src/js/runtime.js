// Loading the wasm module once, in browsers, Workers and Node, and small environment helpers.

import init from "./wasm/browser_llm.js";
import { BrowserLlmError } from "./errors.js";

export const isNode = typeof process !== "undefined" && !!(process.versions && process.versions.node);

let ready = null;
let crashed = null;

/**
 * The wasm module trapped (a Rust panic): its memory and stack may be inconsistent, so nothing in
 * this page uses it again; every later call fails with INTERNAL. (A WorkerEngine contains a crash
 * in its Worker: a new WorkerEngine.load starts a fresh module.)
 */
export function markCrashed(e) {
  crashed ??= e;
}

/** Instantiate the wasm module (once). */
export function loadWasm() {
  if (crashed) {
    return Promise.reject(new BrowserLlmError(
      "INTERNAL",
      `the engine's WebAssembly module crashed earlier in this page (${crashed.message}); reload the page to use it again (a WorkerEngine recovers with a new load)`,
      { cause: crashed },
    ));
  }
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
