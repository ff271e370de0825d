// createRouter against a real OpenAI-compatible server: llama.cpp's own `llama-server`
// (pkg-scripts/llama-server builds it once), started here on 127.0.0.1 with the same SmolLM2 GGUF
// the local engine runs. SmolLM2's own template takes no tools, so the server gets it with Hermes
// tools added (fixtures/chatml-tools.jinja), as one would serve a model for tool calls. On each side: a streamed chat, a tool call and an abort; then the
// fallback when the local model cannot load, the context overflow, and "never remote unless
// configured".

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Engine, createRouter } from "browser-llm";
import { NEAR_TIE } from "./golden.mjs";
import { freePort, startLlamaServer } from "./llama-server.mjs";

const SERVER = process.env.LLAMA_SERVER;
const CHAT_MODEL = process.env.BROWSER_LLM_CHAT_MODEL;
if (!SERVER) throw new Error("set LLAMA_SERVER to llama.cpp's server binary (pkg-scripts/llama-server prints it)");
if (!CHAT_MODEL) throw new Error("set BROWSER_LLM_CHAT_MODEL to SmolLM2's path (pkg-scripts/fetch-model smollm2-135m-instruct)");

const LOCAL_CONTEXT = 512;
let server;
let local;

/** Drain a router stream: content, tool call deltas merged per index, the finish and the routes seen. */
async function drain(stream, { abortAfter, ctl } = {}) {
  let content = "";
  let finish = null;
  let chunks = 0;
  const calls = [];
  const routes = new Set();
  for await (const ch of stream) {
    chunks++;
    routes.add(ch.route.side);
    const c = ch.choices[0];
    if (!c) continue;
    content += c.delta?.content ?? "";
    for (const d of c.delta?.tool_calls ?? []) {
      const call = (calls[d.index] ??= { name: "", arguments: "" });
      call.name += d.function?.name ?? "";
      call.arguments += d.function?.arguments ?? "";
    }
    finish = c.finish_reason ?? finish;
    if (chunks === abortAfter) ctl.abort();
  }
  return { content, finish, chunks, calls, routes: [...routes] };
}

const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", maxLength: 20 } }, required: ["city"], additionalProperties: false },
  },
}];
const hello = [{ role: "user", content: "Say hello in one short sentence." }];
// Two earlier calls as examples. llama.cpp's tool_choice "required" still lets a model write text
// before its call, and a 135M model asked cold writes an essay instead; with examples it calls.
const shot = (city) => [
  { role: "user", content: `What is the weather in ${city}?` },
  { role: "assistant", content: null, tool_calls: [{ id: `call_${city}`, type: "function", function: { name: "get_weather", arguments: JSON.stringify({ city }) } }] },
];
const askWeather = [...shot("Rome"), ...shot("Berlin"), { role: "user", content: "What is the weather in Paris?" }];

before(async () => {
  const template = fileURLToPath(new URL("fixtures/chatml-tools.jinja", import.meta.url));
  server = await startLlamaServer(SERVER, CHAT_MODEL, { template });
  local = await Engine.load(CHAT_MODEL, { backend: "cpu", contextLength: LOCAL_CONTEXT });
});

after(async () => {
  server?.close();
  await local?.dispose();
});

for (const side of ["local", "remote"]) {
  test(`${side}: a streamed chat, a tool call, an abort`, async () => {
    const router = createRouter({ local, remote: server.remote });
    const route = side; // "local" or "remote", asked per request

    const s = await drain(await router.chat.completions.create({ messages: hello, max_tokens: 24, temperature: 0, stream: true, route }));
    assert.deepEqual(s.routes, [side]);
    assert.ok(s.content.trim().length > 0, "a reply");
    assert.ok(["stop", "length"].includes(s.finish), s.finish);
    console.log(`${side} reply: ${JSON.stringify(s.content)}`);

    const t = await drain(await router.chat.completions.create({
      messages: askWeather, tools, tool_choice: "required",
      parallel_tool_calls: false, max_tokens: 60, temperature: 0, stream: true, route,
    }));
    assert.equal(t.calls.length, 1, JSON.stringify(t));
    assert.equal(t.calls[0].name, "get_weather");
    assert.deepEqual(JSON.parse(t.calls[0].arguments), { city: "Paris" });
    assert.equal(t.finish, "tool_calls");
    console.log(`${side} tool call: ${t.calls[0].name}(${t.calls[0].arguments})`);

    // An abort mid-stream ends the stream with finish_reason "abort" on either side, and the
    // side stops generating.
    const ctl = new AbortController();
    const a = await drain(await router.chat.completions.create({
      messages: [{ role: "user", content: "Tell me a long story about a dragon." }], max_tokens: 400, temperature: 0,
      stream: true, route, signal: ctl.signal,
    }), { abortAfter: 3, ctl });
    assert.equal(a.finish, "abort");
    assert.ok(a.chunks < 20, `${a.chunks} chunks`);
    if (side === "remote") {
      let busy = true;
      for (let i = 0; i < 100 && busy; i++) {
        busy = await server.busy();
        if (busy) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(busy, false, "the server stopped generating when the stream was aborted");
    }
    // The side serves again after the abort.
    const again = await router.chat.completions.create({ messages: hello, max_tokens: 4, temperature: 0, route });
    assert.equal(again.route.side, side);
    assert.ok(again.choices[0].message.content.length > 0);
  });
}

test("the same model on both sides: greedy replies agree up to a near tie", async () => {
  const router = createRouter({ local, remote: server.remote });
  const req = { messages: hello, max_tokens: 16, temperature: 0, logprobs: true, top_logprobs: 5 };
  const a = await router.chat.completions.create(req);
  const b = await router.chat.completions.create({ ...req, route: "remote" });
  assert.equal(a.route.side, "local");
  assert.equal(b.route.side, "remote");
  assert.equal(a.usage.prompt_tokens, b.usage.prompt_tokens, "the same prompt on both sides");
  // Token by token until the first difference; there, each side's pick must be within NEAR_TIE
  // of the other side's best (llama.cpp's own flash-attention on/off runs differ as much).
  const la = a.choices[0].logprobs.content;
  const lb = b.choices[0].logprobs.content;
  let i = 0;
  while (i < Math.min(la.length, lb.length) && la[i].token === lb[i].token) i++;
  console.log(`local ${JSON.stringify(a.choices[0].message.content)}; llama.cpp ${JSON.stringify(b.choices[0].message.content)}; same for ${i} tokens`);
  if (i < Math.min(la.length, lb.length)) {
    for (const [mine, theirs] of [[la[i], lb[i]], [lb[i], la[i]]]) {
      const alt = theirs.top_logprobs.find((t) => t.token === mine.token);
      assert.ok(alt, `step ${i}: ${JSON.stringify(mine.token)} is not in the other side's top 5`);
      assert.ok(theirs.logprob - alt.logprob < NEAR_TIE, `step ${i}: ${JSON.stringify(mine.token)} is ${theirs.logprob - alt.logprob} below the other side's best`);
    }
  } else {
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  }
});

test("remote when the local model cannot load, or a request does not fit the local context; never remote unless configured", async () => {
  let sent = 0;
  const remote = { ...server.remote, fetch: (url, init) => { sent++; return fetch(url, init); } };

  // Node has no WebGPU: a GPU-only load fails here as it does on a browser without it.
  const gpuOnly = () => Engine.load(CHAT_MODEL, { backend: "webgpu" });
  const failing = createRouter({ local: gpuOnly, remote });
  const d = await drain(await failing.chat.completions.create({ messages: hello, max_tokens: 8, temperature: 0, stream: true }));
  assert.deepEqual(d.routes, ["remote"]);
  assert.ok(d.content.length > 0);
  const why = (await failing.chat.completions.create({ messages: hello, max_tokens: 4, temperature: 0 })).route.reason;
  assert.match(why, /could not load/);
  assert.equal(sent, 2);
  assert.equal(await failing.localEngine(), null);

  const router = createRouter({ local, remote });
  const long = [{ role: "user", content: "Summarize: " + "the quick brown fox jumps over the lazy dog. ".repeat(60) }];
  const c = await router.chat.completions.create({ messages: long, max_tokens: 8, temperature: 0 });
  assert.equal(c.route.side, "remote");
  assert.match(c.route.reason, new RegExp(`local context of ${LOCAL_CONTEXT}`));
  assert.equal(sent, 3);

  // No remote configured, or local-only: nothing is sent, the local error stands.
  await assert.rejects(createRouter({ local: gpuOnly }).chat.completions.create({ messages: hello }), (e) => typeof e.code === "string" && e.code !== "INTERNAL");
  const localOnly = createRouter({ local, remote, policy: "local-only" });
  await assert.rejects(localOnly.chat.completions.create({ messages: long, max_tokens: 8 }), { code: "CONTEXT_OVERFLOW" });
  assert.equal((await localOnly.chat.completions.create({ messages: hello, max_tokens: 4, temperature: 0 })).route.side, "local");
  assert.equal(sent, 3, "local-only sent nothing remote");
  // A server that is down is a typed NETWORK error, not a hang.
  const down = createRouter({ local, remote: { baseURL: `http://127.0.0.1:${await freePort()}/v1` } });
  await assert.rejects(down.chat.completions.create({ messages: hello, route: "remote" }), { code: "NETWORK" });
});
