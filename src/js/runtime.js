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

/**
 * A module that computes one `i32x4.relaxed_dot_i8x16_i7x16_add_s` of memory bytes 0..16 (i8)
 * and 16..32 (i7) into bytes 48..64. Used to check that the engine has relaxed SIMD *and* computes
 * it right (Node 20's experimental implementation, behind a flag, returns twice the sum).
 */
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 11, 2, 1, 109, 2, 0, 3, 114,
  117, 110, 0, 0, 10, 31, 1, 29, 0, 65, 48, 65, 0, 253, 0, 4, 0, 65, 16, 253, 0, 4, 0, 65, 32, 253, 0, 4, 0,
  253, 147, 2, 253, 11, 4, 0, 11,
]);

/** Whether this engine runs relaxed SIMD's integer dot product correctly. */
function hasRelaxedSimd() {
  try {
    if (!WebAssembly.validate(RELAXED_PROBE)) return false;
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(RELAXED_PROBE));
    const bytes = new Int8Array(exports.m.buffer);
    bytes.fill(-3, 0, 16);
    bytes.fill(5, 16, 32);
    exports.run();
    return new Int32Array(exports.m.buffer, 48, 4).every((v) => v === -60);
  } catch {
    return false;
  }
}

/** Instantiate the wasm module (once): the relaxed-SIMD build where the engine has it. */
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
      // Two literal URLs, so bundlers (Vite, webpack) ship both files.
      const url = hasRelaxedSimd()
        ? new URL("./wasm/browser_llm_relaxed_bg.wasm", import.meta.url)
        : new URL("./wasm/browser_llm_bg.wasm", import.meta.url);
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
