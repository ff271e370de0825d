// The server of the benchmark drivers that open pages of their own (sessions.mjs,
// speculation.mjs): pkg-scripts/serve.mjs on a free port, serving `root` at / and the package at
// /pkg/, with `args` (its model options). Resolves to the server process and its origin.

import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

export async function startServer(root, args) {
  const server = spawn(process.execPath, [path.join(here, "../../pkg-scripts/serve.mjs"), "--port", "0", "--root", root, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const origin = await new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const m = /serving on (http:\/\/[\d.:]+)\//.exec(out);
      if (m) resolve(m[1]);
    });
    server.on("exit", (c) => reject(new Error(`the server exited (${c})`)));
  });
  return { server, origin };
}
