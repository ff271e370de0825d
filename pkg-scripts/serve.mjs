// Static server for the demo page and the end-to-end tests, on 127.0.0.1 only.
//   node pkg-scripts/serve.mjs [--port N] [--model [NAME=]PATH]... [--chat-model PATH] [--completion-model PATH] [--root DIR]
// Serves www/ (or DIR) at /, the built package (pkg/) at /pkg/, and each model file at
// /models/NAME (NAME defaults to the file's own name), with HTTP Range support. The demo page's
// two models have stable URLs: --chat-model PATH is served at /models/smollm2-135m-instruct.gguf
// and --completion-model PATH at /models/gemma-3-270m-q4_k_m.gguf. With no model option,
// BROWSER_LLM_MODEL (if set) is served at its file name. Every response carries COOP/COEP headers
// (cross-origin isolation, for wasm threads and precise timers). Model bytes are sent with
// `Cache-Control: no-store` so the browser's HTTP cache never hides what the package's own
// storage does. GET /__stats returns how many model requests and bytes were served, in all and per
// model NAME (tests use it to prove a warm load makes no weight request); POST /__stats zeroes them.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { applyRange } from "./http-range.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const port = Number(opt("--port", "8080"));

// URL name (under /models/) -> absolute file path.
const models = new Map();
function addModel(name, file) {
  if (!file) throw new Error(`serve.mjs: a model option needs a path`);
  if (!/^[\w.-]+$/.test(name)) throw new Error(`serve.mjs: bad model name ${JSON.stringify(name)}`);
  models.set(name, path.resolve(file));
}
for (let i = 0; i < args.length; i++) {
  const v = args[i + 1];
  if (args[i] === "--model") {
    // NAME=PATH when the part before the first "=" is a plain name; else the whole value is a path.
    const m = /^([\w.-]+)=(.+)$/.exec(v ?? "");
    if (m) addModel(m[1], m[2]);
    else addModel(path.basename(v ?? ""), v);
  } else if (args[i] === "--chat-model") addModel("smollm2-135m-instruct.gguf", v);
  else if (args[i] === "--completion-model") addModel("gemma-3-270m-q4_k_m.gguf", v);
}
if (models.size === 0 && process.env.BROWSER_LLM_MODEL) addModel(path.basename(process.env.BROWSER_LLM_MODEL), process.env.BROWSER_LLM_MODEL);
const site = path.resolve(opt("--root", path.join(root, "www")));

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8", ".json": "application/json", ".wasm": "application/wasm", ".svg": "image/svg+xml",
  ".ts": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8", ".png": "image/png",
};

const freshStats = () => ({
  modelRequests: 0, modelBytes: 0, requests: [],
  byModel: Object.fromEntries([...models.keys()].map((n) => [n, { requests: 0, bytes: 0 }])),
});
let stats = freshStats();

/** The model NAME a URL path names, or undefined. */
function modelName(urlPath) {
  const m = /^\/models\/([^/]+)$/.exec(urlPath);
  return m && models.has(m[1]) ? m[1] : undefined;
}

function resolve(urlPath) {
  if (urlPath.startsWith("/pkg/")) return path.join(root, "pkg", urlPath.slice(5));
  const name = modelName(urlPath);
  if (name) return models.get(name);
  const rel = urlPath === "/" ? "index.html" : urlPath.slice(1);
  return path.join(site, rel);
}

const server = http.createServer((req, res) => {
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
  const url = new URL(req.url, "http://localhost");
  if (url.pathname === "/__stats") {
    if (req.method === "POST") stats = freshStats();
    res.setHeader("Content-Type", "application/json");
    return res.end(JSON.stringify(stats));
  }
  let file;
  let name;
  try {
    const p = decodeURIComponent(url.pathname);
    name = modelName(p);
    file = resolve(p);
  } catch {
    res.statusCode = 400;
    return res.end("bad path");
  }
  const allowed = [site, path.join(root, "pkg")];
  const isModel = name !== undefined;
  if (!isModel && !allowed.some((dir) => file === dir || file.startsWith(dir + path.sep))) {
    res.statusCode = 403;
    return res.end("forbidden");
  }
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) {
      res.statusCode = 404;
      res.setHeader("Content-Type", "text/plain");
      return res.end("not found");
    }
    res.setHeader("Content-Type", isModel ? "application/octet-stream" : TYPES[path.extname(file)] ?? "application/octet-stream");
    res.setHeader("Accept-Ranges", "bytes");
    res.setHeader("Cache-Control", isModel ? "no-store" : "no-cache");
    res.setHeader("ETag", `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`);
    const r = applyRange(req, res, st.size);
    if (!r) return;
    const { start, end } = r;
    if (isModel) {
      stats.modelRequests += 1;
      stats.requests.push({ model: name, range: req.headers.range ?? null });
      stats.byModel[name].requests += 1;
    }
    if (req.method === "HEAD") return res.end();
    const stream = fs.createReadStream(file, { start, end });
    if (isModel) {
      stream.on("data", (chunk) => {
        stats.modelBytes += chunk.length;
        stats.byModel[name].bytes += chunk.length;
      });
    }
    stream.pipe(res);
  });
});

server.listen(port, "127.0.0.1", () => {
  const addr = server.address();
  console.log(`serving on http://127.0.0.1:${addr.port}/`);
  for (const name of models.keys()) console.log(`model: http://127.0.0.1:${addr.port}/models/${name}`);
});
