// A Vite app that imports the package as a user's app would (from node_modules, installed from
// the packed tarball) builds, and its page generates text in headless Chromium.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startServer, launchBrowser } from "./browser.mjs";
import { golden } from "./golden.mjs";

const MODEL = process.env.BROWSER_LLM_MODEL;
if (!MODEL) throw new Error("set BROWSER_LLM_MODEL to the default model's path");
const here = fileURLToPath(new URL(".", import.meta.url));

test("the Vite app builds and generates in Chromium", async () => {
  execFileSync(process.execPath, [`${here}node_modules/vite/bin/vite.js`, "build", "-c", `${here}vite-app/vite.config.js`], { stdio: "inherit" });
  const srv = await startServer(MODEL, `${here}vite-app/dist`);
  const ctx = await launchBrowser();
  try {
    const page = await ctx.newPage();
    await page.goto(`${srv.url}?model=${encodeURIComponent(srv.modelUrl)}`);
    await page.waitForFunction(() => document.body.dataset.done, null, { timeout: 300_000 });
    const out = await page.locator("#out").textContent();
    assert.equal(await page.getAttribute("body", "data-done"), "ok", out);
    const r = JSON.parse(out);
    assert.deepEqual(r.tokenIds, golden.prompts[0].gen_ids_64.slice(0, 8));
    assert.equal(r.text, " the capital of the country of France.");
  } finally {
    await ctx.close();
    srv.close();
  }
});
