// `pkg-scripts/demo --headless [--completion] "PROMPT"`: drive the demo page in headless Chromium
// like a person would (pick a model, load it, type the prompt, press Enter) and print the result.
//   --chat-model PATH        chat: SmolLM2 through the page's chat path (chat.completions); prints the reply
//   --completion-model PATH  completion: Gemma 3 270M (a base model); prints the prompt and its continuation

import { startServer, launchBrowser } from "../tests/js/browser.mjs";

const args = process.argv.slice(2);
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const [chat, completion, backend, prompt] = [opt("--chat-model"), opt("--completion-model"), opt("--backend") ?? "cpu", opt("--prompt")];
if (!(chat || completion) || prompt === undefined) {
  throw new Error("usage: demo-headless.mjs (--chat-model PATH | --completion-model PATH) [--backend B] --prompt TEXT");
}
const isChat = Boolean(chat);

const srv = await startServer(isChat ? { chat } : { completion });
const ctx = await launchBrowser();
try {
  const page = await ctx.newPage();
  await page.goto(srv.url);
  await page.check(`input[name=source][value=${isChat ? "smollm2" : "gemma"}]`);
  await page.selectOption("#backend", backend);
  await page.click("#load-btn");
  await page.waitForFunction(() => document.body.dataset.state !== "loading", null, { timeout: 600_000 });
  if ((await page.getAttribute("body", "data-state")) !== "ready") {
    throw new Error(`loading failed: ${await page.locator("#error").textContent()}`);
  }
  console.error(`loaded: ${await page.locator("#status").textContent()} backend: ${await page.locator("[data-field=backend]").textContent()}`);
  const mode = await page.getAttribute("body", "data-mode");
  if (mode !== (isChat ? "chat" : "completion")) throw new Error(`the page is in ${mode} mode`);
  await page.locator("#settings summary").click();
  await page.fill("#temperature", "0");
  await page.fill("#max-tokens", isChat ? "128" : "64");
  await page.fill("#repeat", "1");
  if (isChat) console.error(`system prompt: ${await page.inputValue("#system-prompt")}`);
  await page.fill("#prompt", prompt);
  await page.press("#prompt", "Enter");
  await page.waitForFunction(() => document.body.dataset.state === "ready" &&
    (document.querySelector(".msg[data-finish-reason]") || !document.querySelector("#error").hidden), null, { timeout: 600_000 });
  if (await page.locator("#error").isVisible()) throw new Error(`generation failed: ${await page.locator("#error").textContent()}`);
  const reply = page.locator(".msg[data-finish-reason]").last();
  console.error(await page.locator("#stats").textContent());
  if (isChat) console.log((await reply.locator(".text").textContent()).trim());
  else console.log(prompt + (await reply.locator(".gen").textContent()));
} finally {
  await ctx.close();
  srv.close();
}
