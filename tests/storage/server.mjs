// Test server for the storage tests: serves synthetic GGUF models (and optionally the real model
// file) with per-model switches, plus static files (the test page and the wasm package).
//
//   GET /m/<name>.gguf          a synthetic GGUF, deterministic from (name, version, size)
//   GET /real/model.gguf        the file named by BROWSER_LLM_MODEL (if set)
//   GET /t/<file>.gguf          a file of the directory named by BROWSER_LLM_TINY_DIR (if set):
//                               tiny real models (tests/reference/make_tiny_models.py)
//   GET /__ctl?name=N&k=v...    set switches for model N (merged into its config):
//       size=<bytes> version=<n> ranges=0|1 throttle=<bytes/s> dropAfter=<bytes> (close the
//       connection once after that many more bytes of N, counted across requests) corruptAt=<offset>
//       (flip that byte in every response) status=<code> html=1 truncate=<bytes> (serve a file cut
//       to that length) hideRange=1 (CORS does not expose Content-Range) validators=0 (no ETag,
//       no Last-Modified) validators=lm (Last-Modified only) etagPerRequest=1 (a new ETag on every
//       answer, as some load-balanced hosts do) stallAfter=<bytes> (after that many more bytes,
//       send nothing more and keep the connection open) changeAfter=<bytes> (after that many more
//       bytes, serve version+1 to later requests: a file replaced mid-download) rangeCap=<bytes>
//       (answer a Range request with at most that many bytes) reset=1 (forget the config first)
//   GET /__stats?name=N         {requests, rangeRequests, bytes, ranges: ["a-b", ...]} since last reset
//   GET /__reset?name=N         zero N's counters
//   GET /__info?name=N          {size, sha256, etag} of what N currently serves
//   GET /hf/<owner>/<repo>/resolve/<revision>/<file>.gguf
//                               answers like the Hugging Face Hub: a redirect (302) to /m/<file>.gguf
//   GET /__hub                  the paths of those requests so far
//   anything else               a static file below the root given to start()
//
// Model bytes carry `Cache-Control: no-store` so Chromium's HTTP cache never resumes or serves a
// download on the package's behalf. CORS is open (the tests fetch models cross-origin) and the
// server listens on 127.0.0.1 only.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import crypto from "node:crypto";

const MIME = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

/** A valid GGUF v3 of about `size` bytes: one string KV, 4 F32 tensors, pseudo-random data. */
export function syntheticGguf(name, version, size) {
  const enc = new TextEncoder();
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { const b = enc.encode(s); u64(b.length); parts.push(Buffer.from(b)); };
  const nT = 4;
  parts.push(Buffer.from("GGUF")); u32(3); u64(nT); u64(1);
  str("general.architecture"); u32(8); str(`synthetic-${name}-v${version}`);
  // Header size with nT tensor infos, to size the tensors; names are "t0".."t3".
  let headerLen = parts.reduce((n, b) => n + b.length, 0) + nT * (8 + 2 + 4 + 8 + 4 + 8);
  headerLen = Math.ceil(headerLen / 32) * 32;
  const dataLen = Math.max(nT * 32, size - headerLen);
  const per = Math.floor(dataLen / nT / 32) * 32; // bytes per tensor, 32-aligned
  for (let i = 0; i < nT; i++) { str(`t${i}`); u32(1); u64(per / 4); u32(0); u64(i * per); }
  let head = Buffer.concat(parts);
  head = Buffer.concat([head, Buffer.alloc(headerLen - head.length)]);
  const data = Buffer.alloc(per * nT);
  let x = (crypto.createHash("sha256").update(`${name}:${version}`).digest().readUInt32LE(0) | 1) >>> 0;
  for (let i = 0; i < data.length; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    data.writeUInt32LE(x, i);
  }
  return Buffer.concat([head, data]);
}

export async function start({ root, port = 0, modelPath = process.env.BROWSER_LLM_MODEL, tinyDir = process.env.BROWSER_LLM_TINY_DIR } = {}) {
  const configs = new Map(); // name -> config
  const hubHits = [];
  const stats = new Map(); // name -> counters
  const bodies = new Map(); // `${name}:${version}:${size}` -> Buffer
  const cfg = (name) => configs.get(name) ?? { size: 1 << 20, version: 1, ranges: true };
  const st = (name) => {
    if (!stats.has(name)) stats.set(name, { requests: 0, rangeRequests: 0, bytes: 0, ranges: [] });
    return stats.get(name);
  };
  const body = (name) => {
    const c = cfg(name);
    const k = `${name}:${c.version}:${c.size}`;
    if (!bodies.has(k)) bodies.set(k, syntheticGguf(name, c.version, c.size));
    let b = bodies.get(k);
    if (c.truncate != null) b = b.subarray(0, c.truncate);
    return b;
  };
  const etag = (name) => { const c = cfg(name); return `"${name}-v${c.version}-${c.size}-${c.truncate ?? ""}"`; };
  const json = (res, v) => { res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-store" }); res.end(JSON.stringify(v)); };
  const cors = { "Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Content-Range, Content-Length, ETag, Last-Modified, Accept-Ranges" };

  async function serveModel(req, res, name, bytes, c, tag) {
    const s = st(name);
    s.requests++;
    if (c.status) { res.writeHead(c.status, { ...cors, "Content-Type": "text/plain" }); res.end(`error ${c.status}`); return; }
    if (c.html) {
      res.writeHead(200, { ...cors, "Content-Type": "text/html", "Cache-Control": "no-store" });
      res.end("<!DOCTYPE html><html><body>Sign in to continue</body></html>".padEnd(4096, " "));
      return;
    }
    const total = typeof bytes === "number" ? bytes : bytes.length;
    let start = 0, end = total; // exclusive
    const m = c.ranges && /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    // hideRange: a CDN whose CORS rule does not expose Content-Range (Range still works).
    const expose = c.hideRange ? { "Access-Control-Expose-Headers": "Content-Length, ETag, Last-Modified, Accept-Ranges" } : {};
    const lastModified = `Mon, ${String(22 + (c.version ?? 1)).padStart(2, "0")} Nov 2026 00:00:00 GMT`;
    const headers = { ...cors, ...expose, "Content-Type": "application/octet-stream", "Cache-Control": "no-store", ETag: tag, "Last-Modified": lastModified };
    if (c.etagPerRequest) headers.ETag = `"${crypto.randomUUID()}"`;
    // validators=0: a server that sends neither ETag nor Last-Modified; "lm": Last-Modified only.
    if (c.validators === 0) { delete headers.ETag; delete headers["Last-Modified"]; }
    if (c.validators === "lm") delete headers.ETag;
    if (c.ranges) headers["Accept-Ranges"] = "bytes";
    if (m) {
      start = Number(m[1]); end = m[2] ? Math.min(Number(m[2]) + 1, total) : total;
      if (c.rangeCap) end = Math.min(end, start + c.rangeCap);
      if (start >= total || start >= end) { res.writeHead(416, { ...headers, "Content-Range": `bytes */${total}` }); res.end(); return; }
      s.rangeRequests++;
      s.ranges.push(`${start}-${end - 1}`);
      res.writeHead(206, { ...headers, "Content-Range": `bytes ${start}-${end - 1}/${total}`, "Content-Length": end - start });
    } else {
      s.ranges.push(`full`);
      res.writeHead(200, { ...headers, "Content-Length": total });
    }
    if (req.method === "HEAD") { res.end(); return; }
    const slice = 64 << 10;
    let at = start;
    let fd = typeof bytes === "number" ? fs.openSync(modelPath, "r") : null;
    try {
      while (at < end) {
        if (res.destroyed) return;
        let n = Math.min(slice, end - at);
        let drop = false;
        let stall = false;
        if (c.dropAfter != null) {
          if (c.dropAfter <= n) { n = c.dropAfter; drop = true; }
          c.dropAfter -= n;
        }
        if (c.stallAfter != null) {
          if (c.stallAfter <= n) { n = c.stallAfter; stall = true; }
          c.stallAfter -= n;
        }
        if (c.changeAfter != null) {
          c.changeAfter -= Math.min(n, c.changeAfter);
          if (c.changeAfter === 0) { c.changeAfter = null; c.version = (c.version ?? 1) + 1; }
        }
        let chunk;
        if (fd != null) { chunk = Buffer.alloc(n); fs.readSync(fd, chunk, 0, n, at); } else chunk = Buffer.from(bytes.subarray(at, at + n));
        if (c.corruptAt != null && c.corruptAt >= at && c.corruptAt < at + n) chunk[c.corruptAt - at] ^= 0xff;
        s.bytes += n;
        at += n;
        const ok = res.write(chunk);
        if (stall) {
          // Nothing more, connection open, until the client gives up (every later answer stalls too).
          c.stallAfter = 0;
          s.stalls = (s.stalls ?? 0) + 1;
          await new Promise((r) => res.once("close", r));
          return;
        }
        if (drop) {
          c.dropAfter = null;
          await new Promise((r) => setTimeout(r, 20));
          res.socket?.destroy();
          return;
        }
        if (c.throttle) await new Promise((r) => setTimeout(r, (n / c.throttle) * 1000));
        else if (!ok) await new Promise((r) => res.once("drain", r));
      }
      res.end();
    } finally {
      if (fd != null) fs.closeSync(fd);
    }
  }

  const handler = async (req, res) => {
    try {
      const url = new URL(req.url, "http://x");
      const name = url.searchParams.get("name");
      if (req.method === "OPTIONS") {
        res.writeHead(204, { ...cors, "Access-Control-Allow-Headers": "Range", "Access-Control-Allow-Methods": "GET, HEAD" });
        return res.end();
      }
      if (url.pathname === "/__ctl") {
        const c = url.searchParams.get("reset") ? { size: 1 << 20, version: 1, ranges: true } : { ...cfg(name) };
        for (const [k, v] of url.searchParams) {
          if (k === "name" || k === "reset") continue;
          c[k] = k === "ranges" ? v !== "0" : k === "html" ? v === "1" : v === "" ? null : k === "validators" && v === "lm" ? "lm" : Number(v);
        }
        configs.set(name, c);
        return json(res, c);
      }
      if (url.pathname === "/__stats") return json(res, st(name));
      if (url.pathname === "/__hub") return json(res, hubHits);
      const hub = /^\/hf\/[^/]+\/[^/]+\/resolve\/[^/]+\/(?:.*\/)?([\w.-]+\.gguf)$/.exec(url.pathname);
      if (hub) {
        hubHits.push(decodeURIComponent(url.pathname));
        res.writeHead(302, { ...cors, Location: `/m/${hub[1]}`, "Cache-Control": "no-store" });
        return res.end();
      }
      if (url.pathname === "/__reset") { stats.delete(name); return json(res, {}); }
      if (url.pathname === "/__info") {
        const b = body(name);
        return json(res, { size: b.length, sha256: crypto.createHash("sha256").update(b).digest("hex"), etag: etag(name) });
      }
      let m = /^\/m\/([\w.-]+)\.gguf$/.exec(url.pathname);
      if (m) return await serveModel(req, res, m[1], body(m[1]), cfg(m[1]), etag(m[1]));
      m = /^\/t\/([\w.-]+\.gguf)$/.exec(url.pathname);
      if (m && tinyDir && fs.existsSync(path.join(tinyDir, m[1]))) {
        const name = `t-${m[1]}`;
        const bytes = fs.readFileSync(path.join(tinyDir, m[1]));
        return await serveModel(req, res, name, bytes, cfg(name), `"${name}-${bytes.length}"`);
      }
      if (url.pathname === "/real/model.gguf" && modelPath) {
        const size = fs.statSync(modelPath).size;
        return await serveModel(req, res, "real", size, cfg("real"), `"real-${size}"`);
      }
      const file = path.join(root, path.normalize(url.pathname).replace(/^(\.\.[/\\])+/, ""));
      if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) { res.writeHead(404); return res.end("not found"); }
      res.writeHead(200, { "Content-Type": MIME[path.extname(file)] ?? "application/octet-stream", "Cache-Control": "no-store" });
      fs.createReadStream(file).pipe(res);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(e));
    }
  };
  // Two listeners sharing one state: the page's origin and a second origin for cross-origin (CORS)
  // model URLs.
  const listen = (p) => new Promise((resolve) => { const s = http.createServer(handler); s.listen(p, "127.0.0.1", () => resolve(s)); });
  const servers = [await listen(port), await listen(0)];
  const close = () => Promise.all(servers.map((s) => new Promise((r) => { s.closeAllConnections(); s.close(r); })));
  return { port: servers[0].address().port, corsPort: servers[1].address().port, close };
}

// `node server.mjs [root] [port]` for manual use.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { port, corsPort } = await start({ root: path.resolve(process.argv[2] ?? "."), port: Number(process.argv[3] ?? 0) });
  console.log(`http://127.0.0.1:${port}/ (models also on port ${corsPort})`);
}
