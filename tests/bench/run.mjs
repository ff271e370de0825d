// Browser benchmark: browser-llm (the built package in pkg/) against wllama (@wllama/wllama, from
// this directory's node_modules) on one GGUF model, CPU only, in one headless Chromium run.
//
//   node tests/bench/run.mjs --model FILE.gguf [--rounds N] [--tokens N] [--ctx N] [--no-mt] [--schema] [--gpu] [--fresh] [--prompt TEXT] [--timeout-min N] [--json FILE]
//
// --gpu: browser-llm on WebGPU (Chromium with --enable-unsafe-webgpu: the machine's GPU through
// Vulkan, or SwiftShader without one) against browser-llm on the CPU (1 thread), no wllama
// (which runs on the CPU only).
// Defaults: 3 rounds, 64 decode tokens (env BENCH_ROUNDS, BENCH_TOKENS; BROWSER_LLM_MODEL for
// --model). --schema adds a row: browser-llm on 1 thread with its output under a JSON schema (the
// constraint's per-token mask), beside the free row. --no-mt skips the 2-thread rows (and so measures browser-llm's single-thread build,
// relaxed SIMD in Chromium). browser-llm runs in WorkerEngines: 2 threads the threaded build,
// 1 thread the single-thread build. Starts a static server on 127.0.0.1
// (COOP/COEP headers, so the page is cross-origin isolated) for page/, pkg/, wllama's esm/ and
// the model; launches Chromium ($CHROMIUM or /usr/bin/chromium) through playwright-core; prints
// a table of the medians to stdout (progress goes to stderr). A benchmark, not a test: it asserts
// nothing about speed, and exits non-zero only when something failed to run.

import http from "node:http";
import os from "node:os";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { applyRange } from "../../pkg-scripts/http-range.mjs";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const model = opt("--model", process.env.BROWSER_LLM_MODEL);
const rounds = Number(opt("--rounds", process.env.BENCH_ROUNDS ?? "3"));
const tokens = Number(opt("--tokens", process.env.BENCH_TOKENS ?? "64"));
const ctx = Number(opt("--ctx", "4096"));
const prompt = opt("--prompt", process.env.BENCH_BROWSER_PROMPT);
const timeoutMin = Number(opt("--timeout-min", "20"));
const jsonOut = opt("--json");
const tryMt = !args.includes("--no-mt");
const schema = args.includes("--schema");
const gpu = args.includes("--gpu");
// --fresh: the other harness style: a fresh page per engine, one streamed generation at once (no
// warm-up), decode timed as the page receives the tokens (an app's first request in a new tab).
const freshMode = args.includes("--fresh");
if (!model) {
  console.error("usage: node tests/bench/run.mjs --model FILE.gguf [--rounds N] [--tokens N] [--ctx N] [--no-mt] [--schema] [--gpu] [--prompt TEXT] [--timeout-min N] [--json FILE]");
  process.exit(2);
}
if (!(rounds >= 1 && tokens >= 2)) {
  console.error("run.mjs: --rounds must be >= 1 and --tokens >= 2");
  process.exit(2);
}

const wllamaDir = path.join(here, "node_modules/@wllama/wllama");
for (const [what, p] of [["the built package (pkg-scripts/build)", path.join(repo, "pkg/index.js")],
  ["wllama (npm ci in tests/bench)", path.join(wllamaDir, "esm/index.js")], ["the model", model]]) {
  if (!fs.existsSync(p)) {
    console.error(`run.mjs: ${what} is missing: ${p}`);
    process.exit(2);
  }
}
const wllamaVersion = JSON.parse(fs.readFileSync(path.join(wllamaDir, "package.json"), "utf8")).version;
const oursVersion = JSON.parse(fs.readFileSync(path.join(repo, "pkg/package.json"), "utf8")).version;
const modelName = path.basename(model);

// URL prefix -> directory; the model is one file.
const MOUNTS = [
  ["/pkg/", path.join(repo, "pkg")],
  ["/wllama/esm/", path.join(wllamaDir, "esm")],
  ["/", path.join(here, "page")],
];
const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json", ".wasm": "application/wasm", ".ts": "text/plain; charset=utf-8",
};

function resolveFile(urlPath) {
  if (urlPath === `/model/${modelName}`) return path.resolve(model);
  for (const [prefix, dir] of MOUNTS) {
    if (!urlPath.startsWith(prefix)) continue;
    const rel = urlPath.slice(prefix.length) || "index.html";
    const file = path.resolve(dir, rel);
    return file.startsWith(dir + path.sep) ? file : null;
  }
  return null;
}

const server = http.createServer((req, res) => {
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
  res.setHeader("Cache-Control", "no-store");
  let file;
  try {
    file = resolveFile(decodeURIComponent(new URL(req.url, "http://localhost").pathname));
  } catch {
    file = null;
  }
  fs.stat(file ?? "", (err, st) => {
    if (!file || err || !st.isFile()) {
      res.statusCode = 404;
      return res.end("not found");
    }
    res.setHeader("Content-Type", TYPES[path.extname(file)] ?? "application/octet-stream");
    res.setHeader("Accept-Ranges", "bytes");
    const r = applyRange(req, res, st.size);
    if (!r) return;
    const { start, end } = r;
    if (req.method === "HEAD") return res.end();
    fs.createReadStream(file, { start, end }).pipe(res);
  });
});

const CHROMIUM_ARGS = [
  "--headless=new", "--no-sandbox", "--disable-quic",
  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ...(gpu ? ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--enable-unsafe-swiftshader"] : []),
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** The server listening and a browser, for `fn(browser, origin)`; both closed after it. */
async function withBrowser(fn) {
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS, headless: true });
  try {
    return await fn(browser, origin);
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
}

/**
 * One page: `params` on the bench page; resolves to what the page reports, after
 * `inspect(page, result)` (if given) looked at the page while it is still open.
 */
async function runPage(browser, origin, params, inspect) {
  const page = await (await browser.newContext()).newPage();
  try {
    const done = new Promise((resolve, reject) => {
      page.exposeFunction("__benchDone", (json) => resolve(JSON.parse(json))).catch(reject);
      page.on("crash", () => reject(new Error("the page crashed")));
      setTimeout(() => reject(new Error(`no result after ${timeoutMin} min`)), timeoutMin * 60_000).unref();
    });
    page.on("console", (m) => {
      const text = m.text();
      if (text.startsWith("[bench] ")) console.error(text);
      else if (m.type() === "error" || m.type() === "warning") console.error(`page ${m.type()}: ${text}`);
    });
    page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
    await page.goto(`${origin}/index.html?${new URLSearchParams(params)}`);
    const res = await done;
    if (res.fatal) throw new Error(`the page failed: ${res.fatal}`);
    if (inspect) await inspect(page, res);
    return res;
  } finally {
    await page.context().close().catch(() => {});
  }
}

/** The fresh-page harness: each engine in a page of its own, in turn, `rounds` times. */
function mainFresh() {
  return withBrowser(async (browser, origin) => {
    const names = tryMt ? ["ours-1", "wllama-1", "ours-2", "wllama-2"] : ["ours-1", "wllama-1"];
    const runs = Object.fromEntries(names.map((n) => [n, []]));
    const t0 = Date.now();
    for (let r = 0; r < rounds; r++) {
      for (const engine of names) {
        const q = { model: `/model/${modelName}`, tokens: String(tokens), ctx: String(ctx), fresh: "1", engine };
        if (prompt) q.prompt = prompt;
        runs[engine].push((await runPage(browser, origin, q)).fresh);
      }
    }
    const line = (c) => console.log(`${c[0].padEnd(28)} ${c.slice(1).map((x, i) => String(x).padStart([10, 14, 16, 14, 14][i])).join(" ")}`);
    console.log(`browser: Chromium ${browser.version()} headless; model ${modelName}; fresh page per engine and run, one streamed greedy generation of ${tokens} tokens, no warm-up; median of ${rounds}; ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    line(["engine (fresh page)", "prompt_tok", "prefill_tok/s", "first_token_ms", "received_tok/s", "1st/2nd half"]);
    const med = (n, k) => median(runs[n].map((x) => x[k]));
    for (const n of names) {
      const [kind, th] = n.split("-");
      const halves = [0, 1].map((i) => median(runs[n].map((x) => x.halves[i])).toFixed(1)).join(" / ");
      line([`${kind === "ours" ? `browser-llm ${oursVersion}` : `wllama ${wllamaVersion}`}, ${th} thr`, runs[n][0].promptTokens ?? "?", (med(n, "prefillTokPerS") ?? 0).toFixed(2), med(n, "firstMs").toFixed(0), med(n, "decodeTokPerS").toFixed(2), halves]);
    }
    const ratio = (a, b, what) => {
      if (runs[a] && runs[b]) console.log(`${what}: prefill ${(med(a, "prefillTokPerS") / med(b, "prefillTokPerS")).toFixed(2)}x, decode as received ${(med(a, "decodeTokPerS") / med(b, "decodeTokPerS")).toFixed(2)}x`);
    };
    ratio("ours-1", "wllama-1", "fresh page: browser-llm / wllama, 1 thread each");
    ratio("ours-2", "wllama-2", "fresh page: browser-llm / wllama, 2 threads each");
    ratio("ours-2", "ours-1", "fresh page: browser-llm 2 threads / 1 thread");
    ratio("wllama-2", "wllama-1", "fresh page: wllama 2 threads / 1 thread");
  });
}

/** The warmed-page harness: every engine in one page, alternating rounds after a warm-up each. */
function main() {
  return withBrowser(async (browser, origin) => {
    const t0 = Date.now();
    const loadBefore = os.loadavg()[0];
    const q = { model: `/model/${modelName}`, rounds: String(rounds), tokens: String(tokens), mt: tryMt ? "1" : "0", ctx: String(ctx), schema: schema ? "1" : "0", gpu: gpu ? "1" : "0" };
    if (prompt) q.prompt = prompt;
    const res = await runPage(browser, origin, q, async (page, res) => {
      // wllama's wasm memory lives in its Worker: ask the Worker (see the hook in bench.js).
      for (const e of res.engines) {
        if (e.wasmBytes != null || !e.workerUrl) continue;
        const w = page.workers().find((x) => x.url() === e.workerUrl);
        e.wasmBytes = w ? await w.evaluate(() => Math.max(0, ...(globalThis.__benchWasmMemories ?? []).map((m) => m.buffer.byteLength))).catch(() => null) : null;
        if (e.wasmBytes === 0) e.wasmBytes = null;
      }
    });
    res.browser = browser.version();
    res.seconds = (Date.now() - t0) / 1000;
    res.loadavg = [loadBefore, os.loadavg()[0]];
    if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(res, null, 2));
    return res;
  });
}

function report(res) {
  const rows = res.engines.filter((e) => e.rounds.length > 0).map((e) => {
    const med = (k) => median(e.rounds.map((r) => r[k]));
    const version = e.name === "wllama" ? `wllama ${wllamaVersion}` : `browser-llm ${oursVersion}${e.name.includes("schema") ? " schema" : ""}`;
    return {
      e, name: e.name.includes("WebGPU") ? `browser-llm ${oursVersion}, WebGPU` : `${version}, ${e.threads} thr`, prompt: med("promptTokens"), prefill: med("prefillTokPerS"),
      passes: med("decodePasses"), decode: med("decodeTokPerS"), wall: med("wallMs"),
      mem: e.wasmBytes != null ? (e.wasmBytes / 2 ** 20).toFixed(0) : "n/a",
    };
  });
  const line = (c) => console.log(`${c[0].padEnd(28)} ${c.slice(1).map((x, i) => String(x).padStart([10, 14, 12, 13, 10, 14][i])).join(" ")}`);
  console.log(`browser: Chromium ${res.browser} headless (crossOriginIsolated=${res.env.crossOriginIsolated}, ${res.env.hardwareConcurrency} cores); ` +
    `model ${modelName}; greedy, EOS ignored; median of ${res.roundsRequested} alternating rounds after a warm-up; ${res.seconds.toFixed(0)} s`);
  line([gpu ? "engine" : "engine (CPU, wasm)", "prompt_tok", "prefill_tok/s", "decode_tok", "decode_tok/s", "wall_ms", "wasm_mem_MiB"]);
  for (const r of rows) line([r.name, r.prompt, r.prefill.toFixed(2), r.passes, r.decode.toFixed(2), r.wall.toFixed(0), r.mem]);
  const o = rows.find((r) => r.e.name === "browser-llm" && r.e.threads === 1);
  const o2 = rows.find((r) => r.e.name === "browser-llm" && r.e.threads === 2);
  const w1 = rows.find((r) => r.e.name === "wllama" && r.e.threads === 1);
  const w2 = rows.find((r) => r.e.name === "wllama" && r.e.threads === 2);
  const ratio = (a, b, what) => {
    if (a && b) console.log(`${what}: prefill ${(a.prefill / b.prefill).toFixed(2)}x, decode ${(a.decode / b.decode).toFixed(2)}x (tok/s)`);
  };
  ratio(o, w1, "browser-llm / wllama, 1 thread each");
  ratio(o2, w2, "browser-llm / wllama, 2 threads each");
  ratio(o2, o, "browser-llm 2 threads / 1 thread");
  const os1 = rows.find((r) => r.e.name === "browser-llm (JSON schema)");
  ratio(os1, o, "browser-llm 1 thread, under a JSON schema / free");
  ratio(w2, w1, "wllama 2 threads / 1 thread");
  const g = rows.find((r) => r.e.name.includes("WebGPU"));
  ratio(g, o, "browser-llm WebGPU / CPU 1 thread");
  if (g) console.log(`WebGPU: ${g.e.detail}`);
  if (o && w1) console.log(`wall time, 1 thread each: browser-llm / wllama ${(o.wall / w1.wall).toFixed(2)}x (<1 is browser-llm faster)`);
  console.log("decode_tok: forward passes timed after the first token (= tokens - 1)");
  const mems = rows.filter((r) => r.e.name === "browser-llm" && r.e.wasmBytes != null);
  for (const mem of mems) {
    const file = fs.statSync(model).size;
    const over = (mem.e.wasmBytes - file) / 1e6;
    console.log(`browser-llm wasm memory at context ${ctx}, ${mem.e.threads} thread${mem.e.threads > 1 ? "s" : ""} (its own Worker, after its warm-up): ${(mem.e.wasmBytes / 1e6).toFixed(0)} MB = model file + ${over.toFixed(0)} MB (target: + 150 MB at most)`);
  }
  if (o && w1) {
    const a = o.e.rounds.at(-1).text;
    const b = w1.e.rounds.at(-1).text;
    let n = 0;
    while (n < Math.min(a.length, b.length) && a[n] === b[n]) n++;
    console.log(`greedy texts: ${a === b ? "identical" : `agree on the first ${n} of ${a.length}/${b.length} characters`}`);
  }
  for (const e of res.errors) console.log(`not run: ${e}`);
  const [lb, la] = res.loadavg.map((x) => x.toFixed(2));
  console.log(`host: ${os.cpus().length} CPUs, 1-minute load average ${lb} before, ${la} after (other work on the host skews every row, the 2-thread row most)`);
}

if (freshMode) {
  try {
    await mainFresh();
    process.exit(0);
  } catch (e) {
    console.error(`run.mjs: ${e?.stack ?? e}`);
    process.exit(1);
  }
}
try {
  const res = await main();
  report(res);
  const ran = (name, threads) => res.engines.some((e) => e.name === name && e.threads === threads && e.rounds.length === rounds);
  if (!ran("browser-llm", 1) || !ran(gpu ? "browser-llm (WebGPU)" : "wllama", gpu ? 0 : 1)) {
    console.error("run.mjs: an engine did not run (see above)");
    process.exit(1);
  }
} catch (e) {
  console.error(`run.mjs: ${e?.stack ?? e}`);
  process.exit(1);
}
