// Model bytes from the source a caller gives: bytes, a File/Blob, a URL, or (Node) a file path.
// Reports progress as { phase, loaded, total, bytesPerSecond }.

import { BrowserLlmError, abortedError } from "./errors.js";
import { isNode, nodeImport } from "./runtime.js";

function progressReporter(phase, total, onProgress) {
  const t0 = Date.now();
  let last = 0;
  return (loaded, force = false) => {
    const now = Date.now();
    if (!onProgress || (!force && now - last < 100)) return;
    last = now;
    const secs = (now - t0) / 1000;
    onProgress({ phase, loaded, total, bytesPerSecond: secs > 0 ? loaded / secs : 0 });
  };
}

/** Bytes allocated up front for a download of declared length. */
const PREALLOCATE = 64 << 20;

async function readStream(stream, total, phase, onProgress, signal) {
  const report = progressReporter(phase, total, onProgress);
  const reader = stream.getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", onAbort);
  try {
    // A declared length is a hint, not trusted with memory: start at most PREALLOCATE, grow by
    // doubling, and land on exactly `total` when the header was honest.
    let out = new Uint8Array(total > 0 ? Math.min(total, PREALLOCATE) : 1 << 20);
    let n = 0;
    for (;;) {
      if (signal?.aborted) throw abortedError();
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.length > out.length) {
        const need = n + value.length;
        const grown = new Uint8Array(total >= need ? Math.min(Math.max(out.length * 2, need), total) : Math.max(out.length * 2, need));
        grown.set(out.subarray(0, n));
        out = grown;
      }
      out.set(value, n);
      n += value.length;
      report(n);
    }
    if (signal?.aborted) throw abortedError();
    report(n, true);
    return n === out.length ? out : out.subarray(0, n);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** The whole model file as bytes. */
export async function readSource(source, { onProgress, signal } = {}) {
  if (signal?.aborted) throw abortedError();
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (typeof Blob !== "undefined" && source instanceof Blob) {
    return readStream(source.stream(), source.size, "load", onProgress, signal);
  }
  if (Array.isArray(source)) {
    throw new BrowserLlmError("INVALID_ARGUMENT", "a split model (an array of parts) loads in browsers, through browser storage; in Node, merge the parts into one file (llama.cpp's gguf-split --merge)");
  }
  if (typeof source !== "string" || source.length === 0) {
    throw new BrowserLlmError("INVALID_ARGUMENT", "the model source must be a URL, a File/Blob, bytes, or (in Node) a file path");
  }
  if (isNode && !/^https?:\/\//i.test(source)) {
    const fs = await nodeImport("node:fs/promises");
    try {
      const bytes = await fs.readFile(source.startsWith("file:") ? new URL(source) : source);
      onProgress?.({ phase: "load", loaded: bytes.length, total: bytes.length, bytesPerSecond: 0 });
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    } catch (e) {
      throw new BrowserLlmError("INVALID_ARGUMENT", `cannot read the model file ${source}: ${e.message}`);
    }
  }
  let res;
  try {
    res = await fetch(source, { signal });
  } catch (e) {
    if (signal?.aborted) throw abortedError();
    throw new BrowserLlmError("NETWORK", `could not fetch ${source}: ${e.message} (offline, a wrong URL, or a server without CORS?)`);
  }
  if (!res.ok) {
    throw new BrowserLlmError("NETWORK", `fetching ${source} failed: HTTP ${res.status} ${res.statusText}`.trim());
  }
  const total = Number(res.headers.get("content-length")) || 0;
  try {
    return await readStream(res.body, total, "download", onProgress, signal);
  } catch (e) {
    if (e instanceof BrowserLlmError) throw e;
    throw new BrowserLlmError("NETWORK", `the download of ${source} failed: ${e.message}`);
  }
}

/**
 * A source `preflight` can read by range in Node (where there is no browser storage): a file
 * path as `{ size, read(offset, length) }` over the open file, a URL as the same over HTTP Range
 * requests. Other sources (bytes, browsers) are passed on as they are.
 */
export async function rangeReader(source, { signal } = {}) {
  if (source instanceof ArrayBuffer) source = new Uint8Array(source);
  if (!isNode || typeof source !== "string") return { reader: source, close: async () => {} };
  if (!/^https?:\/\//i.test(source)) {
    const fs = await nodeImport("node:fs/promises");
    let fh;
    try {
      fh = await fs.open(source.startsWith("file:") ? new URL(source) : source, "r");
    } catch (e) {
      throw new BrowserLlmError("INVALID_ARGUMENT", `cannot read the model file ${source}: ${e.message}`);
    }
    const { size } = await fh.stat();
    const read = async (offset, length) => {
      const buf = new Uint8Array(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    };
    return { reader: { size, read }, close: () => fh.close() };
  }
  const get = async (range) => {
    let res;
    try {
      res = await fetch(source, { signal, headers: { range } });
    } catch (e) {
      if (signal?.aborted) throw abortedError();
      throw new BrowserLlmError("NETWORK", `could not fetch ${source}: ${e.message}`);
    }
    if (res.status !== 206) {
      await res.body?.cancel();
      throw new BrowserLlmError("NETWORK", `${source}: a preflight needs a server that answers HTTP Range requests (got HTTP ${res.status})`);
    }
    return res;
  };
  const probe = await get("bytes=0-0");
  const size = Number(/\/(\d+)$/.exec(probe.headers.get("content-range") ?? "")?.[1]);
  await probe.arrayBuffer();
  if (!Number.isSafeInteger(size)) throw new BrowserLlmError("NETWORK", `${source}: the server did not say the file's size (Content-Range)`);
  const read = async (offset, length) => new Uint8Array(await (await get(`bytes=${offset}-${offset + length - 1}`)).arrayBuffer());
  return { reader: { size, read }, close: async () => {} };
}
