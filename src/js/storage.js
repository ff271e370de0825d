// Cache management: models kept in browser storage (OPFS, or the Cache API where OPFS is missing).

import { toBrowserLlmError } from "./errors.js";
import { guard, loadWasm, markCrashed } from "./runtime.js";

async function call(fn) {
  const rt = await loadWasm().catch((e) => { throw toBrowserLlmError(e); });
  try {
    return await guard(rt, fn(rt.wasm));
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) throw markCrashed(rt, e);
    throw toBrowserLlmError(e);
  }
}

/** Download (or resume) a model into browser storage without loading it: a prefetch. */
export function downloadModel(source, options = {}) {
  return call((wasm) => wasm.downloadModel(source, options));
}

/** Models in browser storage: [{ key, url, size, storedBytes, complete, lastUsed, store }]. */
export function listCachedModels() {
  return call((wasm) => wasm.listCachedModels()).then((list) => list.map((m) => ({ ...m, url: m.sources?.[0] ?? m.key })));
}

/** Remove a cached model (by its key, as listed); a missing key is not an error. */
export function deleteCachedModel(key) {
  return call((wasm) => wasm.deleteCachedModel(key));
}

/** Bytes this site uses and may use: { usage, quota, persisted }. */
export function storageUsage() {
  return call((wasm) => wasm.storageUsage());
}
