// Test harness run on the page and in a dedicated Worker: thin wrappers over the package's storage
// exports that return plain data ({ ok, value } or { ok: false, code, message }) to the test runner.
import init, * as bl from "./dist/browser_llm.js";

const wasmExports = await init();
const wasmMemory = () => wasmExports.memory.buffer.byteLength;

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));

async function wrap(f) {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    return { ok: false, code: e?.code ?? null, message: String(e?.message ?? e), isError: e instanceof Error };
  }
}

// Options with a progress recorder and an AbortController that fires once `abortAt` (a fraction of
// the total) is downloaded, or `abortAfterMs` after the call starts.
function options(o = {}) {
  const { abortAt, abortAfterMs, ...rest } = o;
  const ctrl = new AbortController();
  if (abortAfterMs != null) setTimeout(() => ctrl.abort(), abortAfterMs);
  const events = [];
  const opts = {
    ...rest,
    signal: ctrl.signal,
    onProgress: (p) => {
      events.push(p);
      if (abortAt != null && abortAfterMs == null && p.phase === "download" && p.total > 0 && p.loaded >= abortAt * p.total && !ctrl.signal.aborted) {
        ctrl.abort();
        globalThis.abortedAt = performance.now();
      }
    },
  };
  const summary = () => ({
    count: events.length,
    phases: [...new Set(events.map((e) => e.phase))],
    last: events.at(-1) ?? null,
    downloadMonotonic: events.filter((e) => e.phase === "download").every((e, i, a) => i === 0 || e.loaded >= a[i - 1].loaded),
  });
  return { opts, summary };
}

export const api = {
  async download(source, o) {
    const { opts, summary } = options(o);
    const t0 = performance.now();
    globalThis.abortedAt = null;
    const r = await wrap(() => bl.downloadModel(source, opts));
    r.progress = summary();
    r.ms = performance.now() - t0;
    r.msAfterAbort = globalThis.abortedAt == null ? null : performance.now() - globalThis.abortedAt;
    return r;
  },
  // Start a download and do not wait (the page is reloaded under it).
  startDownload(source, o) {
    const { opts } = options(o);
    globalThis.pendingDownload = bl.downloadModel(source, opts).catch(() => {});
    return { ok: true };
  },
  // Open, read everything (and one range across a chunk boundary), return hashes.
  async read(source, o, probe) {
    return wrap(async () => {
      const m = await bl.openModel(source, o ?? {});
      const all = await m.readAll();
      const out = { key: m.key, size: m.size, store: m.store ?? null, parts: m.parts, sha256: await sha256(all) };
      if (probe) {
        const [off, len] = probe;
        const r = await m.read(off, len);
        out.rangeMatches = r.length === len && r.every((b, i) => b === all[off + i]);
      }
      m.free();
      return out;
    });
  },
  // Copy a URL's bytes into a File, then store/open it as a local file.
  async fromFile(url, name, o) {
    const bytes = new Uint8Array(await (await fetch(url, { cache: "no-store" })).arrayBuffer());
    const file = new File([bytes], name, { lastModified: 1700000000000 });
    const { opts } = options(o);
    const d = await wrap(() => bl.downloadModel(file, opts));
    if (!d.ok) return d;
    const again = await api.read(file, o);
    return { ok: true, value: { ...d.value, readSha256: again.value?.sha256, readStore: again.value?.store } };
  },
  // Load a stored model on `backend` through the engine's one load path; report wasm memory
  // before and after (wasm memory only grows, so "after" is the load's peak), and greedily
  // generate `n` tokens from `prompt` (token ids) when `n` > 0.
  async load(source, o, backend, prompt, n) {
    return wrap(async () => {
      const before = wasmMemory();
      const t0 = performance.now();
      const e = await bl.WasmEngine.load(source, { ...(o ?? {}), backend });
      const loadMs = performance.now() - t0;
      const after = wasmMemory();
      try {
        const info = e.info();
        let tokenIds = [];
        if (n > 0) {
          e.begin(prompt, { maxTokens: n, temperature: 0, ignoreEos: true });
          while ((await e.step()) !== null);
          tokenIds = e.finish().tokenIds;
        }
        return { wasmMemoryBefore: before, wasmMemoryAfter: after, loadMs, backend: info.backend, reason: info.backendReason, tokenIds };
      } finally {
        e.dispose();
        e.free();
      }
    });
  },
  // Greedily generate `n` tokens from `prompt` (token ids) on the CPU engine, loaded from storage.
  async generate(source, o, prompt, n) {
    const r = await api.load(source, o, "cpu", prompt, n);
    return r.ok ? { ok: true, value: r.value.tokenIds } : r;
  },
  // Change one stored chunk's bytes in place (same size), as a disk error or another program would.
  async tamperChunk(key, store, part, chunk) {
    return wrap(async () => {
      const id = (await sha256(new TextEncoder().encode(key))).slice(0, 32);
      const name = `p${part}-c${chunk}`;
      const flip = (b) => { const a = new Uint8Array(b); a[a.length >> 1] ^= 0xff; return a; };
      if (store === "opfs") {
        const dir = await (await (await navigator.storage.getDirectory()).getDirectoryHandle("browser-llm")).getDirectoryHandle(id);
        const fh = await dir.getFileHandle(name);
        const bytes = flip(await (await fh.getFile()).arrayBuffer());
        const w = await fh.createWritable();
        await w.write(bytes);
        await w.close();
        return bytes.length;
      }
      const cache = await caches.open("browser-llm-v1");
      const u = `https://browser-llm.invalid/${id}/${name}`;
      const res = await cache.match(u);
      if (!res) throw new Error(`no cached chunk ${u}`);
      const bytes = flip(await res.arrayBuffer());
      await cache.put(u, new Response(bytes, { headers: res.headers }));
      return bytes.length;
    });
  },
  list: () => wrap(() => bl.listCachedModels()),
  del: (key) => wrap(() => bl.deleteCachedModel(key)),
  usage: () => wrap(() => bl.storageUsage()),
  async clear() {
    for (const m of await bl.listCachedModels()) await bl.deleteCachedModel(m.key);
    return { ok: true };
  },
  fakeQuota(quota) {
    navigator.storage.estimate = async () => ({ usage: 0, quota });
    return { ok: true };
  },
  restoreQuota() {
    delete navigator.storage.estimate;
    return { ok: true };
  },
  // Make every store write after the first `n` fail as a full disk does (QuotaExceededError).
  failWritesAfter(n) {
    const quota = () => new DOMException("the disk is full (test)", "QuotaExceededError");
    // `fail(this)` undoes what the real call would have left open, as the browser does on failure.
    const patch = (proto, name, fail) => {
      if (!proto?.[name]) return;
      const orig = proto[name];
      globalThis.restores = [...(globalThis.restores ?? []), () => (proto[name] = orig)];
      proto[name] = function (...a) {
        if (n-- > 0) return orig.apply(this, a);
        return fail(this);
      };
    };
    patch(globalThis.Cache?.prototype, "put", async () => { throw quota(); });
    patch(globalThis.FileSystemWritableFileStream?.prototype, "close", async (w) => { await w.abort(); throw quota(); });
    patch(globalThis.FileSystemSyncAccessHandle?.prototype, "flush", () => { throw quota(); });
    return { ok: true };
  },
  restoreWrites() {
    (globalThis.restores ?? []).forEach((r) => r());
    globalThis.restores = [];
    return { ok: true };
  },
  disableOpfs() {
    Object.defineProperty(navigator.storage, "getDirectory", { value: undefined, configurable: true });
    return { ok: true };
  },
  // No browser storage at all, as a page over plain http from a LAN address (page only).
  disableStorage() {
    Object.defineProperty(navigator.storage, "getDirectory", { value: undefined, configurable: true });
    Object.defineProperty(globalThis, "caches", { value: undefined, configurable: true });
    return { ok: true };
  },
};
