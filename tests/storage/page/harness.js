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
  preflight: (source, o) => wrap(() => bl.preflight(source, o ?? {})),
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
  // Saved sessions on a tiny model, `backend`: a conversation saved by one engine continues in a
  // fresh one with the same greedy tokens; then the stored file is damaged in each way a disk, a
  // bug or an attacker could, and each restore must be refused (INTEGRITY) and the file removed.
  // `other`: a second model's URL, whose session is planted under the first model's name.
  async sessions(source, other, o, backend) {
    return wrap(async () => {
      const load = (src) => bl.WasmEngine.load(src, { ...(o ?? {}), backend });
      const gen = async (e, prompt, n) => {
        e.begin(prompt, { maxTokens: n, temperature: 0, ignoreEos: true });
        while ((await e.step()) !== null);
        return e.finish();
      };
      const out = {};
      const a = await load(source);
      for (const s of await a.listSessions()) await a.deleteSession(s.name);
      const prompt = [1, 17, 42, 99, 5, 8, 13];
      const first = await gen(a, prompt, 6);
      const meta = await a.saveSession("chat", {});
      out.saved = meta;
      const next = [...prompt, ...first.tokenIds, 4, 5, 6];
      const expected = await gen(a, next, 6);
      const b = await load(source);
      out.restored = await b.restoreSession("chat");
      const got = await gen(b, next, 6);
      out.same = JSON.stringify(got.tokenIds) === JSON.stringify(expected.tokenIds);
      out.cachedTokens = got.usage.cachedTokens;
      out.missing = await b.restoreSession("no such session");

      // The stored file, rewritten in place.
      const id = (await sha256(new TextEncoder().encode(`${meta.model}\n${meta.name}`))).slice(0, 32);
      const original = await api.sessionFile(id);
      out.store = original.store;
      const attempt = async (what, bytes) => {
        await a.saveSession("chat", {}); // a fresh record and file, then replaced
        await api.sessionFile(id, bytes);
        b.reset(); // an engine that holds the tokens already would read only the header
        let r;
        try {
          r = { ok: true, value: await b.restoreSession("chat") };
        } catch (e) {
          r = { ok: false, code: e.code, message: e.message };
        }
        r.what = what;
        r.removed = !(await b.listSessions()).some((s) => s.name === "chat");
        // The engine still generates (from scratch) after a refused restore.
        r.generates = (await gen(b, prompt, 2)).tokenIds.length === 2;
        return r;
      };
      const bytes = original.bytes;
      const flipped = bytes.slice();
      flipped[bytes.length >> 1] ^= 0x40;
      const headerFlip = bytes.slice();
      headerFlip[20] ^= 0x01;
      const c = await load(other);
      await gen(c, prompt, 3);
      const foreign = await c.exportSession();
      // A header that declares a million tokens, with a valid hash, and nothing after it.
      const h = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + new DataView(bytes.buffer).getUint32(8, true))));
      h.tokens = new Array(1000000).fill(1);
      const json = new TextEncoder().encode(JSON.stringify(h));
      const huge = new Uint8Array(12 + json.length + 32);
      huge.set(bytes.subarray(0, 8));
      new DataView(huge.buffer).setUint32(8, json.length, true);
      huge.set(json, 12);
      huge.set(new Uint8Array(await crypto.subtle.digest("SHA-256", json)), 12 + json.length);
      const hugeLen = bytes.slice(0, 64);
      new DataView(hugeLen.buffer).setUint32(8, 0xffffffff, true);
      out.hostile = [];
      for (const [what, b2] of [["truncated", bytes.subarray(0, bytes.length - 100)], ["a flipped byte in a layer", flipped],
        ["a flipped byte in the header", headerFlip], ["another model's session", foreign], ["a huge declared size", huge],
        ["a huge header length", hugeLen], ["empty", new Uint8Array(0)]]) {
        out.hostile.push(await attempt(what, b2));
      }

      // Least recently used eviction under maxSessionBytes, and one session over the cap.
      for (const s of await a.listSessions()) await a.deleteSession(s.name);
      const s1 = await a.saveSession("s1", {});
      const cap = Math.floor(s1.bytes * 2.5); // room for two of these sessions, not three
      await new Promise((r) => setTimeout(r, 5));
      await a.saveSession("s2", { maxSessionBytes: cap });
      await new Promise((r) => setTimeout(r, 5));
      await b.restoreSession("s1");
      await new Promise((r) => setTimeout(r, 5));
      await a.saveSession("s3", { maxSessionBytes: cap });
      out.afterEviction = (await a.listSessions()).map((s) => s.name).sort();
      try {
        await a.saveSession("big", { maxSessionBytes: 1000 });
      } catch (e) {
        out.overCap = e.code;
      }
      for (const e of [a, b, c]) { e.dispose(); e.free(); }
      return out;
    });
  },
  // A saved session's stored file (entry `id`): read it, or replace it with `bytes`.
  async sessionFile(id, bytes) {
    const root = await navigator.storage.getDirectory?.().catch(() => null);
    const dir = root && await root.getDirectoryHandle("browser-llm-sessions").then((d) => d.getDirectoryHandle(id)).catch(() => null);
    if (dir) {
      const fh = await dir.getFileHandle("session");
      if (bytes) {
        const w = await fh.createWritable();
        await w.write(bytes);
        await w.close();
      }
      return { store: "opfs", bytes: new Uint8Array(await (await fh.getFile()).arrayBuffer()) };
    }
    const cache = await caches.open("browser-llm-sessions-v1");
    const u = `https://browser-llm.invalid/${id}/session`;
    if (bytes) await cache.put(u, new Response(bytes));
    const res = await cache.match(u);
    if (!res) throw new Error(`no stored session ${u}`);
    return { store: "cache", bytes: new Uint8Array(await res.arrayBuffer()) };
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
