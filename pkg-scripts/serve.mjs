// Static server for the demo page and the end-to-end tests, on 127.0.0.1 only.
//   node pkg-scripts/serve.mjs [--port N] [--model PATH] [--root DIR]
// Serves www/ (or DIR) at /, the built package (pkg/) at /pkg/, and the model file at
// /models/<its file name>, with HTTP Range support. Every response carries COOP/COEP headers
// (cross-origin isolation, for wasm threads and precise timers). Model bytes are sent with
// `Cache-Control: no-store` so the browser's HTTP cache never hides what the package's own
// storage does. GET /__stats returns how many model requests and bytes were served (tests use it
// to prove a warm load makes no weight request); POST /__stats/reset zeroes them.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const port = Number(opt("--port", "8080"));
const model = opt("--model", process.env.BROWSER_LLM_MODEL);
const site = path.resolve(opt("--root", path.join(root, "www")));

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8", ".json": "application/json", ".wasm": "application/wasm", ".svg": "image/svg+xml",
  ".ts": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8", ".png": "image/png",
};

const stats = { modelRequests: 0, modelBytes: 0, requests: [] };

function resolve(urlPath) {
  if (urlPath.startsWith("/pkg/")) return path.join(root, "pkg", urlPath.slice(5));
  if (model && urlPath === `/models/${path.basename(model)}`) return model;
  const rel = urlPath === "/" ? "index.html" : urlPath.slice(1);
  return path.join(site, rel);
}

const server = http.createServer((req, res) => {
  res.setHeader("Cross-Origin-Opener-Policy", "same-origin");
  res.setHeader("Cross-Origin-Embedder-Policy", "require-corp");
  res.setHeader("Cross-Origin-Resource-Policy", "same-origin");
  const url = new URL(req.url, "http://localhost");
  if (url.pathname === "/__stats") {
    if (req.method === "POST") Object.assign(stats, { modelRequests: 0, modelBytes: 0, requests: [] });
    res.setHeader("Content-Type", "application/json");
    return res.end(JSON.stringify(stats));
  }
  let file;
  try {
    file = resolve(decodeURIComponent(url.pathname));
  } catch {
    res.statusCode = 400;
    return res.end("bad path");
  }
  const allowed = [site, path.join(root, "pkg")];
  const isModel = model && file === model;
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
    let start = 0;
    let end = st.size - 1;
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? "");
    if (range) {
      if (range[1] === "") {
        start = Math.max(0, st.size - Number(range[2]));
      } else {
        start = Number(range[1]);
        if (range[2] !== "") end = Math.min(end, Number(range[2]));
      }
      if (start > end || start >= st.size) {
        res.statusCode = 416;
        res.setHeader("Content-Range", `bytes */${st.size}`);
        return res.end();
      }
      res.statusCode = 206;
      res.setHeader("Content-Range", `bytes ${start}-${end}/${st.size}`);
    }
    res.setHeader("Content-Length", end - start + 1);
    if (isModel) {
      stats.modelRequests += 1;
      stats.requests.push({ range: req.headers.range ?? null });
    }
    if (req.method === "HEAD") return res.end();
    const stream = fs.createReadStream(file, { start, end });
    if (isModel) stream.on("data", (chunk) => { stats.modelBytes += chunk.length; });
    stream.pipe(res);
  });
});

server.listen(port, "127.0.0.1", () => {
  const addr = server.address();
  console.log(`serving on http://127.0.0.1:${addr.port}/`);
  if (model) console.log(`model: http://127.0.0.1:${addr.port}/models/${path.basename(model)}`);
});
