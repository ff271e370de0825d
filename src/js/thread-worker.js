// One CPU thread of the threaded wasm build (a Web Worker, or a Node worker thread): instantiates
// the module on the page's shared memory, then runs the thread pool's worker loop, which never
// returns (see src/backend/cpu/pool.rs). Started by runtime.js `ensureThreads`.
//   message: { module: WebAssembly.Module, relaxed (which threaded build: its glue), memory:
//              WebAssembly.Memory, id, failedFlag }
// If the module traps on this thread, the flag at `failedFlag` is set so the thread that waits
// for this one's work fails instead of waiting forever.

const inBrowser = typeof self !== "undefined" && typeof self.postMessage === "function";

async function run({ module, relaxed, memory, id, failedFlag }) {
  // Literal specifiers, so bundlers ship both.
  const wasm = await (relaxed ? import("./wasm/browser_llm_threads_relaxed.js") : import("./wasm/browser_llm_threads.js"));
  await wasm.default({ module_or_path: module, memory });
  try {
    wasm.threadWorkerMain(id);
  } catch (e) {
    const flags = new Int32Array(memory.buffer);
    Atomics.store(flags, failedFlag >>> 2, 1);
    Atomics.notify(flags, failedFlag >>> 2);
    throw e;
  }
}

if (inBrowser) self.onmessage = (ev) => run(ev.data);
else (await import(/* @vite-ignore */ /* webpackIgnore: true */ "node:worker_threads")).parentPort.once("message", run);
