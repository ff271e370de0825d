// Shared by the end-to-end tests and `pkg-scripts/demo --headless`: start the demo server on a
// free port and launch Debian's Chromium (headless, WebGPU on SwiftShader) through
// playwright-core.

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const CHROMIUM_ARGS = [
  "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--disable-quic",
  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const SERVE = fileURLToPath(new URL("../../pkg-scripts/serve.mjs", import.meta.url));

/**
 * Start pkg-scripts/serve.mjs. `models`: one model file's path (served at /models/<its name>), or
 * { chat, completion } paths (served at the demo page's two model URLs; either may be missing).
 * Resolves to { url, modelUrl (the first model's), stats(), resetStats(), close() }.
 */
export function startServer(models, root) {
  return new Promise((resolve, reject) => {
    const modelArgs = typeof models === "string" ? ["--model", models] : [
      ...(models.chat ? ["--chat-model", models.chat] : []),
      ...(models.completion ? ["--completion-model", models.completion] : []),
    ];
    const extra = root ? ["--root", root] : [];
    const proc = spawn(process.execPath, [SERVE, "--port", "0", ...modelArgs, ...extra], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    proc.on("exit", (code) => reject(new Error(`the demo server exited (${code})`)));
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /serving on (\S+)/.exec(out);
      const mm = /model: (\S+)/.exec(out);
      if (m && mm) {
        const url = m[1];
        resolve({
          url,
          modelUrl: mm[1],
          stats: async () => (await fetch(`${url}__stats`)).json(),
          resetStats: async () => (await fetch(`${url}__stats`, { method: "POST" })).json(),
          close: () => proc.kill(),
        });
      }
    });
  });
}

export async function launchBrowser(userDataDir) {
  const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (userDataDir) {
    // A persistent profile: storage survives page reloads and browser restarts, as a user's does.
    return chromium.launchPersistentContext(userDataDir, { executablePath, args: CHROMIUM_ARGS, headless: true });
  }
  const browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
  const ctx = await browser.newContext();
  // Closing the context must also end the browser process, or Node never exits.
  const closeContext = ctx.close.bind(ctx);
  ctx.close = async () => {
    await closeContext().catch(() => {});
    await browser.close();
  };
  return ctx;
}
