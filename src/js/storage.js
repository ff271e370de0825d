// Cache management: models kept in browser storage (OPFS, or the Cache API where OPFS is missing).

import { toBrowserLlmError } from "./errors.js";
import { ensureThreads, guard, isNode, loadWasm, markCrashed } from "./runtime.js";
import { rangeReader } from "./source.js";

async function call(fn) {
  const rt = await loadWasm().catch((e) => { throw toBrowserLlmError(e); });
  try {
    return await guard(rt, fn(rt.wasm));
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) throw markCrashed(rt, e);
    throw toBrowserLlmError(e);
  }
}

/** Ask the browser to keep this origin's storage (pages only: a Worker has no `persist()`). */
export async function requestPersist(options) {
  if (options?.persist === true && typeof navigator !== "undefined") {
    await navigator.storage?.persist?.().catch(() => false);
  }
}

/** Download (or resume) a model into browser storage without loading it: a prefetch. */
export async function downloadModel(source, options = {}) {
  await requestPersist(options);
  return call((wasm) => wasm.downloadModel(source, options));
}

/**
 * What loading `source` with `options` (load's) would take, before any download: the model's
 * shape from its header (a remote file's first bytes), KV cache, fit in storage and memory, the
 * backend `auto` would pick, and decode/prefill speeds estimated by timing the model's own
 * products there. CPU estimates run on the threads a load with these options would get.
 */
export async function preflight(source, options = {}) {
  options ??= {};
  const { onProgress: _p, signal, ...rest } = options;
  let src = source;
  if (isNode && typeof src === "string" && src.startsWith("hf:")) {
    const rt = await loadWasm().catch((e) => { throw toBrowserLlmError(e); });
    const urls = rt.wasm.resolveHubId(src, options.hfEndpoint);
    src = urls[0];
  }
  const { reader, close } = await rangeReader(src, { signal }).catch((e) => { throw toBrowserLlmError(e); });
  let rt = null;
  try {
    rt = await loadWasm({ threads: Number.isInteger(options.threads) ? options.threads : undefined });
    await ensureThreads(rt, options.threads);
    return await guard(rt, rt.wasm.preflight(reader, { ...rest, signal }));
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) throw markCrashed(rt, e);
    throw toBrowserLlmError(e);
  } finally {
    await close();
  }
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
