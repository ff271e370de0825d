// A user's app on the one-line adapters, in the browser: the official `openai` and `ai` packages
// and the Prompt API's `LanguageModel`, bundled by Vite with the package, over one WorkerEngine.
// The Prompt API also runs inside a Worker (prompt-worker.js). Each step's result (or its error)
// goes to the DOM as JSON; tests/js/vite.test.mjs checks them.
import { WorkerEngine, openaiFetch, createBrowserLlm, installLanguageModel } from "browser-llm";
import OpenAI from "openai";
import { generateText, streamText, generateObject, streamObject, jsonSchema, tool } from "ai";

const out = document.getElementById("out");
const model = new URLSearchParams(location.search).get("model");
const results = {};
const step = async (name, fn) => {
  try {
    results[name] = await fn();
  } catch (e) {
    results[name] = { error: `${e?.code ?? e?.name}: ${e?.message}` };
  }
};
const weatherSchema = { type: "object", properties: { city: { type: "string", maxLength: 20 } }, required: ["city"], additionalProperties: false };
const answerSchema = { type: "object", properties: { answer: { enum: ["yes", "no"] } }, required: ["answer"], additionalProperties: false };
const messages = [{ role: "user", content: "Say hello." }];

const engine = await WorkerEngine.load(model, { backend: "cpu", contextLength: 1024 });

// The OpenAI SDK, unchanged but for its fetch.
const client = new OpenAI({ apiKey: "local", baseURL: "http://local/v1", fetch: openaiFetch(engine), dangerouslyAllowBrowser: true, maxRetries: 0 });
await step("openaiChat", async () => {
  const c = await client.chat.completions.create({ model: "local", messages, max_tokens: 8, temperature: 0 });
  let streamed = "";
  const s = await client.chat.completions.create({ model: "local", messages, max_tokens: 8, temperature: 0, stream: true });
  for await (const ch of s) streamed += ch.choices[0]?.delta?.content ?? "";
  return { text: c.choices[0].message.content, streamed };
});
await step("openaiTool", async () => {
  const tools = [{ type: "function", function: { name: "get_weather", parameters: weatherSchema } }];
  const final = await client.chat.completions.stream({ model: "local", messages: [{ role: "user", content: "Weather in Paris?" }], tools, tool_choice: "required", parallel_tool_calls: false, temperature: 0, max_tokens: 60 }).finalChatCompletion();
  return { finish: final.choices[0].finish_reason, call: final.choices[0].message.tool_calls[0].function };
});
await step("openaiAbort", async () => {
  const ctl = new AbortController();
  const s = await client.chat.completions.create({ model: "local", messages, max_tokens: 200, temperature: 0, stream: true }, { signal: ctl.signal });
  let chunks = 0;
  for await (const _ of s) if (++chunks === 3) ctl.abort();
  const after = await client.chat.completions.create({ model: "local", messages, max_tokens: 8, temperature: 0 });
  return { chunks, after: after.choices[0].message.content };
});

// The Vercel AI SDK on the provider.
const llm = createBrowserLlm(engine)();
await step("aiText", async () => {
  const g = await generateText({ model: llm, prompt: "Say hello.", temperature: 0, maxOutputTokens: 8 });
  const s = streamText({ model: llm, prompt: "Say hello.", temperature: 0, maxOutputTokens: 8 });
  let streamed = "";
  for await (const t of s.textStream) streamed += t;
  return { text: g.text, streamed, inputTokens: g.usage.inputTokens };
});
await step("aiToolStream", async () => {
  const weather = tool({ description: "Current weather in a city", inputSchema: jsonSchema(weatherSchema), execute: async ({ city }) => ({ city, celsius: 18 }) });
  const s = streamText({ model: llm, prompt: "What is the weather in Paris?", tools: { weather }, toolChoice: "required", temperature: 0, maxOutputTokens: 60 });
  const parts = [];
  const inputs = {}; // per tool call id: its tool-input-delta pieces joined
  for await (const p of s.fullStream) {
    parts.push(p.type);
    if (p.type === "tool-input-delta") inputs[p.id] = (inputs[p.id] ?? "") + p.delta;
  }
  return { parts: [...new Set(parts)], inputs: Object.values(inputs), toolResults: (await s.toolResults).map((r) => r.output) };
});
await step("aiObject", async () => {
  const g = await generateObject({ model: llm, prompt: "Is the sky blue?", schema: jsonSchema(answerSchema), temperature: 0, maxOutputTokens: 40 });
  const s = streamObject({ model: llm, prompt: "Is the sky blue?", schema: jsonSchema(answerSchema), temperature: 0, maxOutputTokens: 40 });
  let partials = 0;
  for await (const _ of s.partialObjectStream) partials++;
  return { object: g.object, streamed: await s.object, partials };
});
await step("aiAbort", async () => {
  const ctl = new AbortController();
  const s = streamText({ model: llm, prompt: "Tell a long story.", temperature: 0, maxOutputTokens: 300, abortSignal: ctl.signal });
  let pieces = 0;
  try {
    for await (const _ of s.textStream) if (++pieces === 3) ctl.abort();
  } catch (e) {
    if (e?.name !== "AbortError" && !/abort/i.test(e?.message)) throw e;
  }
  return { pieces };
});

// The Prompt API's LanguageModel on the page (the engine is already loaded: "available")...
await step("promptApi", async () => {
  const LanguageModel = installLanguageModel(engine, { target: {} });
  const availability = await LanguageModel.availability();
  const s = await LanguageModel.create({ temperature: 0, topK: 1 });
  const reply = await s.prompt("Say hello.");
  let streamed = "";
  for await (const piece of s.promptStreaming("Say it again.")) streamed += piece;
  const json = await s.prompt("Is the sky blue?", { responseConstraint: answerSchema });
  return { availability, reply, streamed, json, contextWindow: s.contextWindow, contextUsage: s.contextUsage };
});
await engine.dispose();

// ... and in a Worker, loading its own engine with download progress.
await step("promptApiWorker", () => new Promise((resolve, reject) => {
  const w = new Worker(new URL("./prompt-worker.js", import.meta.url), { type: "module" });
  w.onmessage = (ev) => { w.terminate(); ev.data.error ? reject(new Error(ev.data.error)) : resolve(ev.data); };
  w.onerror = (ev) => { w.terminate(); reject(new Error(ev.message)); };
  w.postMessage({ model: new URL(model, location.href).href });
}));

out.textContent = JSON.stringify(results);
document.body.dataset.done = "ok";
