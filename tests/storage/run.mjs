// Browser storage tests: the wasm package (built by pkg-scripts/test-storage into page/dist) in
// headless Chromium, on the page and in a dedicated Worker, with OPFS and with the Cache API,
// against server.mjs. Run: node --test tests/storage/run.mjs (or pkg-scripts/test-storage).
//
// Every scenario checks the server's request/byte counters, not just the outcome, and prints them.
// The real-model memory measurement runs when BROWSER_LLM_MODEL names the model file.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { start, syntheticGguf } from "./server.mjs";

/** A test's `skip` option: the reason when `ok` is false; under BROWSER_LLM_REQUIRE_ALL=1 (CI) a
 * test that would skip fails the run instead (node's runner counts a skip as a pass). */
function skipUnless(ok, why) {
  if (ok) return false;
  if (process.env.BROWSER_LLM_REQUIRE_ALL === "1") throw new Error(`${why}: with BROWSER_LLM_REQUIRE_ALL=1 a test may not skip`);
  return why;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// The flags of DESIGN §7, minus --headless=new (playwright-core passes its own headless flag).
const ARGS = ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const CHUNK = 64 << 10;
const SIZE = (1 << 20) + 12345; // ~1 MiB: 17 chunks of 64 KiB, the last one short

const CONTEXTS = [
  { name: "worker+opfs", where: "worker", store: "auto", expect: "opfs" },
  { name: "page+opfs", where: "page", store: "auto", expect: "opfs" },
  { name: "page+cache", where: "page", store: "cache", expect: "cache" },
  { name: "worker+auto-without-opfs", where: "worker", store: "auto", expect: "cache", noOpfs: true },
];

let srv, ctx, page, base, cors;
const report = [];
const log = (line) => { report.push(line); console.log(`    ${line}`); };

async function http(p) { return (await fetch(`${base}${p}`)).json(); }
const ctl = (name, q) => http(`/__ctl?name=${name}&${new URLSearchParams(q)}`);
const stats = (name) => http(`/__stats?name=${name}`);
const reset = (name) => http(`/__reset?name=${name}`);
const info = (name) => http(`/__info?name=${name}`);
const url = (name) => `${cors}/m/${name}.gguf`;
const sha = (b) => crypto.createHash("sha256").update(b).digest("hex");
const nChunks = (size) => Math.ceil(size / CHUNK);

async function openPage(c) {
  if (!page) {
    page = await ctx.newPage();
    page.on("pageerror", (e) => console.log("pageerror:", e.message));
  }
  await page.goto(`${base}/index.html`);
  await page.waitForFunction(() => window.harnessReady === true);
  if (c?.noOpfs) await call(c, "disableOpfs");
}
const call = (c, fn, ...args) => page.evaluate(([w, f, a]) => window.call(w, f, ...a), [c.where, fn, args]);
const entry = async (c, key) => (await call(c, "list")).value.find((m) => m.key === key);

before(async () => {
  srv = await start({ root: path.join(here, "page") });
  base = `http://127.0.0.1:${srv.port}`;
  cors = `http://127.0.0.1:${srv.corsPort}`;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "browser-llm-storage-"));
  ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
  ctx.profile = profile;
});

after(async () => {
  await ctx?.close();
  await srv?.close();
  if (ctx?.profile) fs.rmSync(ctx.profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  console.log(`\nstorage test report:\n  ${report.join("\n  ")}`);
});

for (const [ci, c] of CONTEXTS.entries()) {
  const opts = (o = {}) => ({ store: c.store, chunkSize: CHUNK, ...o });
  const name = (s) => `c${ci}-${s}`;

  test(`${c.name}`, async (t) => {
    await openPage(c);
    await call(c, "clear");

    await t.test("cold load fetches every byte once; warm load makes no request", async () => {
      const n = name("cold");
      await ctl(n, { reset: 1, size: SIZE });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts());
      assert.ok(r.ok, r.message);
      assert.equal(r.value.size, size);
      assert.equal(r.value.store, c.expect);
      const s = await stats(n);
      assert.equal(s.bytes, size, "every byte exactly once");
      assert.equal(s.requests, nChunks(size), "one request per chunk");
      assert.ok(r.progress.count > 0 && r.progress.downloadMonotonic);
      assert.equal(r.progress.last.loaded, size);
      const rd = await call(c, "read", url(n), opts(), [CHUNK - 100, 300]);
      assert.ok(rd.ok, rd.message);
      assert.equal(rd.value.sha256, sha256, "read back byte-identical");
      assert.ok(rd.value.rangeMatches, "a range across a chunk boundary reads right");
      await reset(n);
      const w = await call(c, "download", url(n), opts());
      assert.ok(w.ok, w.message);
      assert.equal((await stats(n)).requests, 0, "warm load: no request");
      const e = await entry(c, url(n));
      assert.ok(e.complete && e.size === size && e.storedBytes === size && e.store === c.expect);
      log(`${c.name} cold: ${s.requests} requests, ${s.bytes} bytes for ${size}; warm: 0 requests`);
    });

    await t.test("dropped connection: retried within the call, and resumed by the next call", async () => {
      const n = name("drop");
      await ctl(n, { reset: 1, size: SIZE, dropAfter: Math.floor(SIZE * 0.4) });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts({ retries: 0 }));
      assert.equal(r.code, "NETWORK", r.message);
      const first = await stats(n);
      const e = await entry(c, url(n));
      assert.ok(e && !e.complete && e.storedBytes > 0 && e.storedBytes < size, JSON.stringify(e));
      await reset(n);
      const r2 = await call(c, "download", url(n), opts({ retries: 0 }));
      assert.ok(r2.ok, r2.message);
      const s2 = await stats(n);
      assert.equal(s2.bytes, size - e.storedBytes, "the resume fetches only the missing chunks");
      assert.equal(s2.requests, nChunks(size) - e.storedBytes / CHUNK);
      const rd = await call(c, "read", url(n), opts());
      assert.equal(rd.value.sha256, sha256);
      log(`${c.name} drop at 40%: first call ${first.bytes} bytes then NETWORK; ${e.storedBytes} bytes kept; resume ${s2.requests} requests, ${s2.bytes} bytes`);

      const n2 = name("drop-retry");
      await ctl(n2, { reset: 1, size: SIZE, dropAfter: Math.floor(SIZE * 0.5) });
      const r3 = await call(c, "download", url(n2), opts());
      assert.ok(r3.ok, r3.message);
      const s3 = await stats(n2);
      assert.ok(s3.bytes <= size + CHUNK, `${s3.bytes} bytes`);
      assert.equal((await call(c, "read", url(n2), opts())).value.sha256, (await info(n2)).sha256);
      log(`${c.name} drop at 50% with retries: one call, ${s3.requests} requests, ${s3.bytes} bytes for ${size}`);
    });

    await t.test("corrupted bytes give INTEGRITY, nothing complete is kept, a retry heals", async () => {
      const n = name("corrupt");
      await ctl(n, { reset: 1, size: SIZE, corruptAt: Math.floor(SIZE / 2) });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts({ sha256 }));
      assert.equal(r.code, "INTEGRITY", r.message);
      const e = await entry(c, url(n));
      assert.ok(!e || !e.complete, "never marked complete");
      await ctl(n, { corruptAt: "" });
      await reset(n);
      const r2 = await call(c, "download", url(n), opts({ sha256 }));
      assert.ok(r2.ok, r2.message);
      assert.ok(r2.progress.phases.includes("verify"));
      const rd = await call(c, "read", url(n), opts({ sha256 }));
      assert.equal(rd.value.sha256, sha256);
      const s = await stats(n);
      log(`${c.name} corrupt byte: INTEGRITY (${r.message.slice(0, 60)}...), entry after: ${e ? "partial" : "none"}; retry ${s.bytes} bytes, verified`);
    });

    await t.test("a stored chunk changed on disk is never used: INTEGRITY, then the next open re-downloads just that chunk", async () => {
      const n = name("tamper");
      await ctl(n, { reset: 1, size: SIZE });
      const { sha256 } = await info(n);
      assert.ok((await call(c, "download", url(n), opts())).ok);
      const t = await call(c, "tamperChunk", url(n), c.expect, 0, 3);
      assert.ok(t.ok && t.value === CHUNK, t.message);
      await reset(n);
      const r = await call(c, "read", url(n), opts());
      assert.equal(r.code, "INTEGRITY", r.message);
      assert.match(r.message, /chunk 0\/3 .*sha256/);
      assert.equal((await stats(n)).requests, 0);
      const r2 = await call(c, "read", url(n), opts());
      assert.ok(r2.ok, r2.message);
      assert.equal(r2.value.sha256, sha256);
      const s = await stats(n);
      assert.equal(s.bytes, CHUNK, "only the damaged chunk is fetched again");
      log(`${c.name} chunk changed on disk: INTEGRITY on read; next open fetched ${s.requests} request(s), ${s.bytes} bytes; verified`);
    });

    await t.test("a partial download from a server without ETag or Last-Modified starts over (a same-size new version never mixes in)", async () => {
      const n = name("novalidators");
      await ctl(n, { reset: 1, size: SIZE, validators: 0, dropAfter: Math.floor(SIZE * 0.4) });
      const r = await call(c, "download", url(n), opts({ retries: 0 }));
      assert.equal(r.code, "NETWORK", r.message);
      const e = await entry(c, url(n));
      assert.ok(e && !e.complete && e.storedBytes > 0, JSON.stringify(e));
      await ctl(n, { version: 2 }); // same size, other bytes, still no validators
      const { size, sha256 } = await info(n);
      await reset(n);
      const r2 = await call(c, "download", url(n), opts());
      assert.ok(r2.ok, r2.message);
      const s = await stats(n);
      assert.ok(s.bytes >= size, `${s.bytes} bytes: the kept chunks were reused`);
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256, "the new version, whole");
      log(`${c.name} no validators: ${e.storedBytes} bytes kept from the first try; the retry fetched ${s.bytes} of ${size} (started over); the new version's bytes`);
    });

    await t.test("a server without Range support still works", async () => {
      const n = name("norange");
      await ctl(n, { reset: 1, size: SIZE, ranges: 0 });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts());
      assert.ok(r.ok, r.message);
      const s = await stats(n);
      assert.equal(s.requests, 1);
      assert.equal(s.bytes, size);
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256);
      await reset(n);
      assert.ok((await call(c, "download", url(n), opts())).ok);
      assert.equal((await stats(n)).requests, 0);
      log(`${c.name} no Range: ${s.requests} request, ${s.bytes} bytes; warm: 0 requests`);
    });

    await t.test("a CDN that hides Content-Range from CORS: read as one stream", async () => {
      const n = name("hidden-range");
      await ctl(n, { reset: 1, size: SIZE, hideRange: 1 });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts());
      assert.ok(r.ok, r.message);
      const s = await stats(n);
      assert.equal(s.requests, 2, "the ranged probe, then one full request");
      assert.ok(s.bytes >= size && s.bytes <= size + CHUNK, `${s.bytes} bytes for a ${size}-byte file`);
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256);
      log(`${c.name} Content-Range hidden by CORS: ${s.requests} requests, ${s.bytes} bytes (probe chunk + the file)`);
    });

    await t.test("404, an HTML page and a truncated file give clear errors and leave nothing", async () => {
      const cases = [["404", { status: 404 }, "NETWORK"], ["html", { html: 1 }, "BAD_GGUF"], ["trunc", { truncate: SIZE - 5000 }, "BAD_GGUF"]];
      for (const [suffix, q, code] of cases) {
        const n = name(suffix);
        await ctl(n, { reset: 1, size: SIZE, ...q });
        const r = await call(c, "download", url(n), opts());
        assert.equal(r.code, code, `${suffix}: ${r.message}`);
        assert.ok(r.isError && r.message.length > 10);
        assert.equal(await entry(c, url(n)), undefined, `${suffix}: nothing cached`);
        const s = await stats(n);
        assert.ok(s.bytes <= CHUNK, `${suffix}: stopped after the first chunk (${s.bytes} bytes)`);
        log(`${c.name} ${suffix}: ${r.code} after ${s.requests} request(s), ${s.bytes} bytes: ${r.message}`);
      }
    });

    await t.test("a quota smaller than the model fails before downloading", async () => {
      const n = name("quota");
      await ctl(n, { reset: 1, size: SIZE });
      await call(c, "fakeQuota", Math.floor(SIZE / 2));
      const r = await call(c, "download", url(n), opts());
      await call(c, "restoreQuota");
      assert.equal(r.code, "QUOTA_EXCEEDED", r.message);
      assert.match(r.message, /needs .* available/);
      assert.equal(await entry(c, url(n)), undefined);
      const s = await stats(n);
      assert.ok(s.bytes <= CHUNK, `${s.bytes} bytes`);
      log(`${c.name} quota: QUOTA_EXCEEDED with ${s.bytes} body bytes sent: ${r.message}`);
    });

    await t.test("a write that fails for quota removes the partial copy and says so", async () => {
      const n = name("diskfull");
      await ctl(n, { reset: 1, size: SIZE });
      await call(c, "failWritesAfter", 6);
      const r = await call(c, "download", url(n), opts());
      await call(c, "restoreWrites");
      assert.equal(r.code, "QUOTA_EXCEEDED", r.message);
      assert.match(r.message, /partial copy was removed/);
      assert.equal(await entry(c, url(n)), undefined);
      log(`${c.name} disk full mid-download: ${r.code}: ${r.message.slice(0, 90)}...`);
    });

    await t.test("AbortSignal cancels promptly and the next call resumes", async () => {
      const n = name("abort");
      await ctl(n, { reset: 1, size: SIZE, throttle: SIZE / 2 });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts({ abortAt: 0.3 }));
      assert.equal(r.code, "ABORTED", r.message);
      assert.ok(r.msAfterAbort < 500, `settled ${r.msAfterAbort} ms after abort()`);
      const e = await entry(c, url(n));
      assert.ok(e && !e.complete && e.storedBytes > 0);
      await ctl(n, { throttle: "" });
      await reset(n);
      const r2 = await call(c, "download", url(n), opts());
      assert.ok(r2.ok, r2.message);
      const s = await stats(n);
      assert.equal(s.bytes, size - e.storedBytes);
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256);
      log(`${c.name} abort at 30%: rejected ${r.msAfterAbort.toFixed(0)} ms after abort(), ${e.storedBytes} bytes kept; resume ${s.bytes} bytes`);
    });

    await t.test("a changed remote file discards the old chunks", async () => {
      const n = name("changed");
      await ctl(n, { reset: 1, size: SIZE, dropAfter: Math.floor(SIZE * 0.5) });
      assert.equal((await call(c, "download", url(n), opts({ retries: 0 }))).code, "NETWORK");
      await ctl(n, { version: 2 });
      const { size, sha256 } = await info(n);
      await reset(n);
      const r = await call(c, "download", url(n), opts());
      assert.ok(r.ok, r.message);
      const s = await stats(n);
      assert.equal(s.bytes, size, "everything fetched again");
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256);
      log(`${c.name} remote changed (ETag): ${s.bytes} bytes refetched, content is the new version`);
    });

    await t.test("a server that stalls after its headers fails with NETWORK within the inactivity timeout; the next call resumes", async () => {
      const n = name("stall");
      await ctl(n, { reset: 1, size: SIZE, stallAfter: Math.floor(SIZE * 0.4) });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts({ retries: 0, inactivityTimeout: 1500 }));
      assert.equal(r.code, "NETWORK", r.message);
      assert.match(r.message, /stalled/);
      assert.ok(r.message.includes(`/m/${n}.gguf`), r.message);
      assert.ok(r.ms >= 1500 && r.ms < 1500 + 4000, `ended ${r.ms.toFixed(0)} ms after the start`);
      const kept = await entry(c, url(n));
      await ctl(n, { stallAfter: "" });
      await reset(n);
      const r2 = await call(c, "download", url(n), opts());
      assert.ok(r2.ok, r2.message);
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256);
      log(`${c.name} stalled server: NETWORK after ${r.ms.toFixed(0)} ms (inactivityTimeout 1500), ${kept?.storedBytes ?? 0} bytes kept; resumed with ${(await stats(n)).bytes} of ${size} bytes`);
    });

    await t.test("a file replaced mid-download is never stored as a mix (ETag, Last-Modified only, neither): the download starts over as one stream", async () => {
      for (const [kind, v] of [["ETag", {}], ["Last-Modified only", { validators: "lm" }], ["no validators", { validators: 0 }]]) {
        const n = name(`mid-${v.validators ?? "etag"}`);
        await ctl(n, { reset: 1, size: SIZE, ...v });
        const v1 = await info(n);
        await ctl(n, { changeAfter: Math.floor(SIZE * 0.3) });
        const r = await call(c, "download", url(n), opts());
        assert.ok(r.ok, `${kind}: ${r.message}`);
        const v2 = await info(n);
        assert.notEqual(v1.sha256, v2.sha256, "the file did change");
        const got = (await call(c, "read", url(n), opts())).value.sha256;
        assert.ok(got === v1.sha256 || got === v2.sha256, `${kind}: the stored file is a mix of two versions`);
        const s = await stats(n);
        log(`${c.name} replaced mid-download (${kind}): stored the ${got === v2.sha256 ? "new" : "old"} version whole; ${s.requests} requests, ${s.ranges.filter((x) => x === "full").length} full`);
      }
    });

    await t.test("an ETag that differs on every answer falls back to Last-Modified and finishes chunked", async () => {
      const n = name("etagvar");
      await ctl(n, { reset: 1, size: SIZE, etagPerRequest: 1 });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts());
      assert.ok(r.ok, r.message);
      const s = await stats(n);
      assert.equal(s.bytes, size, "every byte once: no restart");
      assert.equal(s.rangeRequests, nChunks(size));
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256);
      log(`${c.name} per-request ETag: finished in ${s.requests} ranged requests`);
    });

    await t.test("a server that answers a shorter Range than asked is continued from where it stopped", async () => {
      const n = name("cap");
      await ctl(n, { reset: 1, size: SIZE, rangeCap: 10000 });
      const { size, sha256 } = await info(n);
      const r = await call(c, "download", url(n), opts());
      assert.ok(r.ok, r.message);
      const s = await stats(n);
      assert.equal(s.bytes, size, "no byte twice");
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256);
      log(`${c.name} Range answers capped at 10000 bytes: ${s.requests} requests for ${size} bytes`);
    });

    await t.test("a remote file that shrank below the stored chunks starts afresh", async () => {
      const n = name("shrunk");
      await ctl(n, { reset: 1, size: SIZE, dropAfter: Math.floor(SIZE * 0.8) });
      assert.equal((await call(c, "download", url(n), opts({ retries: 0 }))).code, "NETWORK");
      const kept = await entry(c, url(n));
      // Smaller than what is stored: resuming asks for a range past its end (HTTP 416).
      await ctl(n, { version: 2, size: Math.floor(kept.storedBytes / 2) });
      const { size, sha256 } = await info(n);
      await reset(n);
      const r = await call(c, "download", url(n), opts());
      assert.ok(r.ok, r.message);
      const s = await stats(n);
      assert.ok(s.bytes >= size && s.bytes < size + 2 * CHUNK, `${s.bytes} bytes fetched for a ${size}-byte file`);
      assert.equal((await call(c, "read", url(n), opts())).value.sha256, sha256);
      log(`${c.name} remote shrank to ${size} bytes (stored ${kept.storedBytes}): started afresh, ${s.bytes} bytes fetched`);
    });

    await t.test("split GGUF parts are one model", async () => {
      const [a, b] = [name("split-a"), name("split-b")];
      await ctl(a, { reset: 1, size: 300000 });
      await ctl(b, { reset: 1, size: 200000 });
      const want = sha(Buffer.concat([syntheticGguf(a, 1, 300000), syntheticGguf(b, 1, 200000)]));
      const r = await call(c, "download", [url(a), url(b)], opts());
      assert.ok(r.ok, r.message);
      const rd = await call(c, "read", [url(a), url(b)], opts(), [299000, 2000]);
      assert.equal(rd.value.sha256, want);
      assert.equal(rd.value.parts.length, 2);
      assert.ok(rd.value.rangeMatches);
      log(`${c.name} split: 2 parts, ${rd.value.size} bytes, key ${rd.value.key.split("/").pop()}`);
    });

    await t.test("a local File is stored and reopened; cache:false reads straight from the source", async () => {
      const n = name("file");
      await ctl(n, { reset: 1, size: SIZE });
      const { sha256 } = await info(n);
      const f = await call(c, "fromFile", url(n), `${n}.gguf`, opts());
      assert.ok(f.ok, f.message);
      assert.match(f.value.key, /^file:/);
      assert.equal(f.value.readSha256, sha256);
      assert.equal(f.value.readStore, c.expect);
      await reset(n);
      const d = await call(c, "read", url(n), { cache: false });
      assert.ok(d.ok, d.message);
      assert.equal(d.value.sha256, sha256);
      assert.equal(d.value.store, null);
      assert.equal(await entry(c, url(n)), undefined, "cache:false stores nothing");
      const s = await stats(n);
      assert.ok(s.rangeRequests === s.requests, "cache:false reads by Range");
      log(`${c.name} File: stored under ${f.value.key}; cache:false: ${s.requests} Range requests`);
    });

    await t.test("two different Files with the same name, size and date are two stored copies", async () => {
      const [a, b] = [name("same-a"), name("same-b")];
      await ctl(a, { reset: 1, size: SIZE, version: 1 });
      await ctl(b, { reset: 1, size: SIZE, version: 2 });
      const [ia, ib] = [await info(a), await info(b)];
      assert.notEqual(ia.sha256, ib.sha256);
      const fa = await call(c, "fromFile", url(a), "model.gguf", opts());
      const fb = await call(c, "fromFile", url(b), "model.gguf", opts());
      assert.ok(fa.ok && fb.ok, fa.message ?? fb.message);
      assert.notEqual(fa.value.key, fb.value.key);
      assert.equal(fa.value.readSha256, ia.sha256);
      assert.equal(fb.value.readSha256, ib.sha256, "the second file reads its own bytes, not the first's");
      log(`${c.name} same name/size/date, other bytes: keys ${fa.value.key.slice(-16)} vs ${fb.value.key.slice(-16)}; each reads its own bytes`);
    });

    await t.test("list, delete and usage", async () => {
      const before = (await call(c, "list")).value;
      assert.ok(before.length > 0);
      const u = await call(c, "usage");
      assert.ok(u.ok && u.value.quota > 0 && u.value.usage > 0, JSON.stringify(u));
      const key = url(name("cold"));
      assert.ok((await call(c, "del", key)).ok);
      assert.equal(await entry(c, key), undefined);
      assert.ok((await call(c, "del", key)).ok, "deleting twice is fine");
    });
  });
}

test("page reload mid-download resumes with only the missing chunks", async () => {
  for (const c of CONTEXTS.slice(0, 3)) {
    const n = `reload-${c.where}-${c.expect}`;
    const opts = { store: c.store, chunkSize: CHUNK };
    await openPage(c);
    await ctl(n, { reset: 1, size: SIZE, throttle: SIZE / 3 });
    const { size, sha256 } = await info(n);
    await call(c, "startDownload", url(n), opts);
    for (let i = 0; i < 200 && (await stats(n)).bytes < size * 0.5; i++) await new Promise((r) => setTimeout(r, 50));
    const served = (await stats(n)).bytes;
    await page.reload();
    await page.waitForFunction(() => window.harnessReady === true);
    await ctl(n, { throttle: "" });
    const e = await entry(c, url(n));
    assert.ok(e && !e.complete && e.storedBytes > 0 && e.storedBytes < size, JSON.stringify(e));
    await reset(n);
    const r = await call(c, "download", url(n), opts);
    assert.ok(r.ok, r.message);
    const s = await stats(n);
    assert.equal(s.bytes, size - e.storedBytes, "only the missing chunks");
    assert.equal((await call(c, "read", url(n), opts)).value.sha256, sha256);
    log(`${c.name} reload after ${served} bytes served: ${e.storedBytes} kept; resume ${s.requests} requests, ${s.bytes} bytes; identical`);
  }
});

test("two writers of one model (the page and a Worker, as two tabs would be) take turns: one download, both get the model", async () => {
  const [onPage, inWorker] = [CONTEXTS[1], CONTEXTS[0]]; // both OPFS, one origin
  const n = "two-writers";
  const opts = { store: "auto", chunkSize: CHUNK };
  await openPage(onPage);
  await ctl(n, { reset: 1, size: SIZE, throttle: SIZE / 2 });
  const { size, sha256 } = await info(n);
  const [a, b] = await Promise.all([call(onPage, "download", url(n), opts), call(inWorker, "download", url(n), opts)]);
  assert.ok(a.ok, a.message);
  assert.ok(b.ok, b.message);
  const s = await stats(n);
  assert.equal(s.bytes, size, "every byte downloaded once: the second writer waited and found the stored copy");
  assert.equal((await call(inWorker, "read", url(n), opts)).value.sha256, sha256);
  // A waiting writer can be aborted.
  const n2 = "two-writers-abort";
  await ctl(n2, { reset: 1, size: SIZE, throttle: SIZE / 2 });
  const first = call(onPage, "download", url(n2), opts);
  for (let i = 0; i < 100 && (await stats(n2)).bytes === 0; i++) await new Promise((r) => setTimeout(r, 20));
  const second = await call(inWorker, "download", url(n2), { ...opts, abortAfterMs: 200 });
  assert.equal(second.code, "ABORTED", second.message);
  assert.ok((await first).ok);
  log(`two writers: ${s.requests} requests, ${s.bytes} bytes for ${size}; a waiting writer aborted: ${second.code}`);
});

test("a split GGUF loads into the engine as one model: the same tokens as the single file", { skip: skipUnless(process.env.BROWSER_LLM_TINY_DIR, "BROWSER_LLM_TINY_DIR not set") }, async () => {
  // tiny-llama written whole and as 3 parts (pkg-scripts/test-storage makes both).
  const c = CONTEXTS[0];
  const parts = fs.readdirSync(process.env.BROWSER_LLM_TINY_DIR).filter((f) => /^tiny-llama-\d+-of-\d+\.gguf$/.test(f)).sort();
  assert.equal(parts.length, 3, parts.join(", "));
  await openPage(c);
  const prompt = [1, 17, 42, 99, 5];
  const single = await call(c, "generate", `${cors}/t/tiny-llama.gguf`, { store: c.store }, prompt, 12);
  assert.ok(single.ok, single.message);
  const split = await call(c, "generate", parts.map((f) => `${cors}/t/${f}`), { store: c.store }, prompt, 12);
  assert.ok(split.ok, split.message);
  assert.deepEqual(split.value, single.value);
  // One part alone is a clear error.
  const alone = await call(c, "generate", `${cors}/t/${parts[0]}`, { store: c.store }, prompt, 12);
  assert.equal(alone.code, "UNSUPPORTED_MODEL");
  assert.match(alone.message, /part 1 of a model split into 3/);
  log(`split model: ${parts.length} parts, 12 greedy tokens equal the single file's: ${split.value.join(" ")}`);
});

test("saved sessions: a conversation saved by one engine continues in a fresh one with the same tokens, every context and backend; damaged, truncated, foreign and huge session files are INTEGRITY and removed; least recently used go first", { skip: skipUnless(process.env.BROWSER_LLM_TINY_DIR, "BROWSER_LLM_TINY_DIR not set") }, async () => {
  const runs = [...CONTEXTS.map((c) => [c, "cpu"]), [CONTEXTS[0], "webgpu"]];
  for (const [c, backend] of runs) {
    await openPage(c);
    const r = await call(c, "sessions", `${cors}/t/tiny-llama.gguf`, `${cors}/t/tiny-qwen2.gguf`, { store: c.store }, backend);
    assert.ok(r.ok, `${c.name} ${backend}: ${r.message}`);
    const v = r.value;
    const where = `${c.name} ${backend}`;
    assert.equal(v.store, c.noOpfs ? "cache" : "opfs", `${where}: sessions live in OPFS where there is one`);
    assert.equal(v.saved.tokens, 7 + 6 - 1, where);
    assert.equal(v.restored.tokens, v.saved.tokens, where);
    assert.equal(v.restored.alreadyHeld, false, where);
    assert.ok(v.same, `${where}: the restored conversation continues with the saver's tokens`);
    assert.equal(v.cachedTokens, v.saved.tokens, where);
    assert.equal(v.missing, null, where);
    for (const h of v.hostile) {
      assert.equal(h.ok, false, `${where}: ${h.what} was restored`);
      assert.equal(h.code, "INTEGRITY", `${where}: ${h.what}: ${h.code} ${h.message}`);
      assert.ok(h.removed, `${where}: ${h.what} was not removed`);
      assert.ok(h.generates, `${where}: ${h.what}: the engine no longer generates`);
    }
    assert.deepEqual(v.afterEviction, ["s1", "s3"], `${where}: s2 was the least recently used`);
    assert.equal(v.overCap, "QUOTA_EXCEEDED", where);
    const why = runs[0][0] === c && backend === "cpu" ? `: ${v.hostile.map((h) => `${h.what}: ${h.message.replace(/^.*damaged: /, "")}`).join("; ")}` : "";
    log(`sessions ${where} (${v.store}): ${v.saved.bytes} bytes for ${v.saved.tokens} tokens, restored and continued equal; ${v.hostile.length} hostile files refused and removed${why}`);
  }
});

test("a page with no browser storage loads a URL straight from the server; downloadModel says why it cannot", { skip: skipUnless(process.env.BROWSER_LLM_TINY_DIR, "BROWSER_LLM_TINY_DIR not set") }, async () => {
  const c = CONTEXTS[1]; // in the page: its globals are what the engine sees
  await openPage(c);
  await call(c, "disableStorage");
  const prompt = [1, 17, 42, 99, 5];
  const r = await call(c, "generate", `${cors}/t/tiny-llama.gguf`, { store: "auto" }, prompt, 4);
  assert.ok(r.ok, r.message);
  assert.equal(r.value.length, 4);
  const d = await call(c, "download", `${cors}/t/tiny-llama.gguf`, { store: "auto" });
  assert.equal(d.ok, false);
  assert.match(d.message, /Cache API/);
  log(`no OPFS and no Cache API: Engine.load(url) read the model from the server (${r.value.length} tokens generated); downloadModel: ${d.code}`);
  await openPage(c); // a fresh page: storage back for the tests after this one
});

test("Hugging Face ids: hf:owner/repo/file.gguf@revision is fetched from the Hub's URL (its redirect followed); a first split part brings every part; a malformed id is INVALID_ARGUMENT", async () => {
  const c = CONTEXTS[0];
  await openPage(c);
  const hfEndpoint = `${cors}/hf`;
  await ctl("hub-one", { reset: 1, size: SIZE });
  const one = await info("hub-one");
  const r = await call(c, "download", "hf:acme/tiny-models/sub/hub-one.gguf@v2", { hfEndpoint, chunkSize: CHUNK });
  assert.ok(r.ok, r.message);
  assert.equal(r.value.size, one.size);
  let hits = await http("/__hub");
  assert.ok(hits.includes("/hf/acme/tiny-models/resolve/v2/sub/hub-one.gguf"), JSON.stringify(hits));
  const rd = await call(c, "read", "hf:acme/tiny-models/sub/hub-one.gguf@v2", { hfEndpoint, chunkSize: CHUNK });
  assert.ok(rd.ok, rd.message);
  assert.equal(rd.value.sha256, one.sha256, "the stored copy is the file the id names");
  const [a, b] = ["hub-split-00001-of-00002", "hub-split-00002-of-00002"];
  await ctl(a, { reset: 1, size: 300000 });
  await ctl(b, { reset: 1, size: 200000 });
  const split = await call(c, "download", `hf:acme/tiny-models/${a}.gguf`, { hfEndpoint, chunkSize: CHUNK });
  assert.ok(split.ok, split.message);
  assert.equal(split.value.size, (await info(a)).size + (await info(b)).size);
  hits = await http("/__hub");
  assert.ok(hits.includes(`/hf/acme/tiny-models/resolve/main/${b}.gguf`), "the second part was fetched by its own Hub URL");
  const whole = await call(c, "read", `hf:acme/tiny-models/${a}.gguf`, { hfEndpoint, chunkSize: CHUNK });
  assert.equal(whole.value.sha256, sha(Buffer.concat([syntheticGguf(a, 1, 300000), syntheticGguf(b, 1, 200000)])));
  const bad = await call(c, "download", "hf:acme/hub-one.gguf", { hfEndpoint });
  assert.equal(bad.code, "INVALID_ARGUMENT", bad.message);
  log(`hf: ids: one file through the Hub's redirect, a 2-part split model; ${hits.length} Hub requests; a malformed id: ${bad.message}`);
});

test("real model: preflight reads under 1% of a remote file, then nothing once it is stored", { skip: skipUnless(process.env.BROWSER_LLM_MODEL, "BROWSER_LLM_MODEL not set") }, async () => {
  // (Its estimates beside measured speeds: the demo page end to end, a release build.)
  const c = CONTEXTS[0]; // Worker + OPFS, where the package runs the engine
  const size = fs.statSync(process.env.BROWSER_LLM_MODEL).size;
  const src = `${cors}/real/model.gguf`;
  await openPage(c);
  await call(c, "del", src);
  await reset("real");
  const opts = { store: c.store, contextLength: 1024, backend: "cpu" };
  const p = await call(c, "preflight", src, opts);
  assert.ok(p.ok, p.message);
  const s = await stats("real");
  assert.ok(s.bytes < size / 100, `preflight fetched ${s.bytes} bytes of ${size}`);
  const v = p.value;
  assert.equal(v.architecture, "gemma3");
  assert.equal(v.fileBytes, size);
  assert.deepEqual([v.stored, v.quantizationExact, v.fitsQuota, v.fitsMemory], [false, false, true, true], JSON.stringify(v));
  assert.equal(v.kvBytes, 18 * 1024 * 512 * 2);
  assert.ok(v.estimate.decodeTokensPerSecond > 0 && v.estimate.prefillTokensPerSecond > 0, JSON.stringify(v.estimate));
  const d = await call(c, "download", src, { store: c.store });
  assert.ok(d.ok, d.message);
  await reset("real");
  const again = await call(c, "preflight", src, opts);
  assert.ok(again.ok, again.message);
  assert.deepEqual([again.value.stored, again.value.quantizationExact], [true, true]);
  assert.equal((await stats("real")).requests, 0, "a stored model's preflight makes no request");
  log(`preflight of a remote ${(size / 1e6).toFixed(1)} MB model: ${s.requests} requests, ${s.bytes} bytes (${(100 * s.bytes / size).toFixed(2)}%); stored: 0 requests, exact types ${again.value.quantization.map((q) => q[0]).join(" ")}`);
});

test("real model: the engine loads tensor by tensor: the CPU never holds the file twice, the GPU never more than a piece", { skip: skipUnless(process.env.BROWSER_LLM_MODEL, "BROWSER_LLM_MODEL not set") }, async () => {
  const c = CONTEXTS[0]; // Worker + OPFS, where the package runs the engine
  const model = process.env.BROWSER_LLM_MODEL;
  const size = fs.statSync(model).size;
  const src = `${cors}/real/model.gguf`;
  await openPage(c);
  await call(c, "del", src);
  await reset("real");
  const t0 = Date.now();
  const r = await call(c, "download", src, { store: c.store });
  assert.ok(r.ok, r.message);
  const s = await stats("real");
  assert.equal(s.bytes, size);
  const dlMs = Date.now() - t0;
  const golden = JSON.parse(fs.readFileSync(new URL("../golden/gemma3-270m.json", import.meta.url), "utf8")).prompts[0];
  const mb = (x) => `${(x / 1e6).toFixed(1)} MB`;
  const out = [];
  for (const backend of ["webgpu", "cpu"]) {
    await openPage(c); // a fresh wasm instance: its memory starts small
    await reset("real");
    const n = backend === "cpu" ? 2 : 0; // SwiftShader decodes ~2 tokens/s: the GPU test only loads
    // A 256-token context: the KV cache (f32, 36 KiB per token on this model) stays small beside
    // the weights, so the peak shows what the load itself holds.
    const l = await call(c, "load", src, { store: c.store, contextLength: 256 }, backend, golden.prompt_ids, n);
    assert.ok(l.ok, `${backend}: ${l.message}`);
    assert.equal((await stats("real")).requests, 0, "loaded from storage, no network");
    const v = l.value;
    if (backend === "cpu") {
      // The CPU keeps every weight in wasm memory; reading tensor by tensor into place must not
      // add a second copy of the file.
      assert.ok(v.wasmMemoryAfter < size * 1.35, `${backend}: peak wasm memory ${mb(v.wasmMemoryAfter)} vs model ${mb(size)}`);
      assert.deepEqual(v.tokenIds, golden.gen_ids.slice(0, n), "the first greedy tokens equal llama.cpp's");
    } else {
      assert.equal(v.backend, "webgpu", v.reason);
      assert.ok(v.wasmMemoryAfter < size / 4, `${backend}: peak wasm memory ${mb(v.wasmMemoryAfter)} vs model ${mb(size)}`);
    }
    out.push(`${backend} load ${(v.loadMs / 1000).toFixed(1)} s, wasm memory ${mb(v.wasmMemoryBefore)} -> peak ${mb(v.wasmMemoryAfter)} ` +
      `(${(100 * v.wasmMemoryAfter / size).toFixed(1)}% of the model)`);
  }
  log(`real model ${mb(size)}: cold download ${s.requests} requests, ${s.bytes} bytes, ${(dlMs / 1000).toFixed(1)} s; ${out.join("; ")}`);
});

test("real model: deleting it while a Worker loads it waits for the load (which succeeds), then removes it", { skip: skipUnless(process.env.BROWSER_LLM_MODEL, "BROWSER_LLM_MODEL not set") }, async () => {
  const [worker, pageCtx] = [CONTEXTS[0], CONTEXTS[1]];
  const src = `${cors}/real/model.gguf`;
  await openPage(worker);
  const d0 = await call(worker, "download", src, { store: worker.store });
  assert.ok(d0.ok, d0.message);
  const golden = JSON.parse(fs.readFileSync(new URL("../golden/gemma3-270m.json", import.meta.url), "utf8")).prompts[0];
  const t0 = Date.now();
  const load = call(worker, "load", src, { store: worker.store, contextLength: 256 }, "cpu", golden.prompt_ids, 1).then((r) => ({ r, at: Date.now() - t0 }));
  await new Promise((r) => setTimeout(r, 1500)); // the Worker is reading tensors
  const del = call(pageCtx, "del", src).then((r) => ({ r, at: Date.now() - t0 }));
  const [l, d] = await Promise.all([load, del]);
  assert.ok(l.r.ok, `the load under the delete: ${l.r.message}`);
  assert.deepEqual(l.r.value.tokenIds, golden.gen_ids.slice(0, 1));
  assert.ok(d.r.ok, d.r.message);
  assert.ok(d.at >= l.r.value.loadMs - 300, `the delete ended ${d.at} ms after the start, the load's reads ${l.r.value.loadMs.toFixed(0)} ms`);
  assert.equal(await entry(worker, src), undefined, "removed once the load was done");
  log(`delete during a load: the load read for ${(l.r.value.loadMs / 1000).toFixed(1)} s and succeeded; the delete waited and ended at ${(d.at / 1000).toFixed(1)} s`);
});
