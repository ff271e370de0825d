// `pkg-scripts/demo --headless "PROMPT"`: drive the demo page in headless Chromium like a person
// would (load the default model, type the prompt, press Enter) and print the generated text.

import { startServer, launchBrowser } from "../tests/js/browser.mjs";

const args = process.argv.slice(2);
const opt = (name) => args[args.indexOf(name) + 1];
const [model, backend, prompt] = [opt("--model"), opt("--backend"), opt("--prompt")];

const srv = await startServer(model);
const ctx = await launchBrowser();
try {
  const page = await ctx.newPage();
  await page.goto(srv.url);
  await page.selectOption("#backend", backend);
  await page.click("#load-btn");
  await page.waitForFunction(() => document.body.dataset.state !== "loading", null, { timeout: 600_000 });
  if ((await page.getAttribute("body", "data-state")) !== "ready") {
    throw new Error(`loading failed: ${await page.locator("#error").textContent()}`);
  }
  console.error(`loaded: ${await page.locator("#status").textContent()} backend: ${await page.locator("[data-field=backend]").textContent()}`);
  await page.locator("#settings summary").click();
  await page.fill("#temperature", "0");
  await page.fill("#max-tokens", "64");
  await page.fill("#repeat", "1");
  await page.fill("#prompt", prompt);
  await page.press("#prompt", "Enter");
  await page.waitForFunction(() => document.querySelector(".msg[data-finish-reason]") && document.body.dataset.state === "ready", null, { timeout: 600_000 });
  const text = await page.locator(".msg[data-finish-reason] .gen").last().textContent();
  console.error(await page.locator("#stats").textContent());
  console.log(prompt + text);
} finally {
  await ctx.close();
  srv.close();
}
