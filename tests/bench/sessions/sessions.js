// The saved-sessions benchmark page (driven by ../sessions.mjs through playwright): the package
// as an app uses it, a WorkerEngine on a model in browser storage. `window.bench` holds the steps;
// the driver reloads the page between saving a conversation and continuing it.

import { WorkerEngine } from "/pkg/index.js";

const MODEL = "/models/smollm2-135m-instruct.gguf";
const SESSION = "bench";
let engine;

// A conversation of about `target` tokens: a system prompt and user/assistant turns on one topic,
// fixed text (no generation), so every run and every engine sees the same tokens.
const FACTS = [
  "Roman engineers built stone arch bridges that still carry traffic two thousand years later.",
  "Medieval bridges often held shops and houses, and their tolls paid for their upkeep.",
  "The first iron bridge, at Coalbrookdale in 1779, was assembled with joints copied from carpentry.",
  "Suspension bridges hang their deck from cables draped over towers and anchored at both ends.",
  "Cable-stayed bridges run their cables straight from the towers to the deck, with no main cable.",
  "The Tacoma Narrows bridge twisted itself apart in a steady wind in 1940, and engineers learned about flutter.",
  "Modern long spans are tested as scale models in wind tunnels before anything is built.",
  "Expansion joints let a bridge grow and shrink with the temperature without cracking.",
];
function conversation(target, count) {
  const messages = [{ role: "system", content: "You are a patient teacher of engineering history. Answer briefly." }];
  let i = 0;
  const grow = async () => {
    while ((await count(messages)) < target) {
      messages.push({ role: "user", content: `Tell me something about bridges (${i + 1}).` });
      messages.push({ role: "assistant", content: `${FACTS[i % FACTS.length]} ${FACTS[(i + 3) % FACTS.length]}` });
      i++;
    }
    messages.push({ role: "user", content: "Which of these ideas mattered most, in one sentence?" });
    return messages;
  };
  return grow();
}

/** Time to the first streamed content token of a chat request, and its usage. */
async function firstToken(messages, extra = {}) {
  const t0 = performance.now();
  let ttft = null;
  let usage = null;
  let text = "";
  let session = null;
  const chunks = await engine.chat.completions.create({
    messages, temperature: 0, max_tokens: 16, stream: true, stream_options: { include_usage: true }, ...extra,
  });
  for await (const c of chunks) {
    const d = c.choices[0]?.delta?.content;
    if (d && ttft === null) ttft = performance.now() - t0;
    if (d) text += d;
    if (c.usage) usage = c.usage;
    if (c.session) session = c.session;
  }
  return { ttftMs: ttft ?? performance.now() - t0, usage, text, session };
}

window.bench = {
  async load(backend) {
    const t0 = performance.now();
    engine = await WorkerEngine.load(MODEL, { backend, contextLength: 2048 });
    const info = await engine.info();
    return { loadMs: performance.now() - t0, backend: info.backend, reason: info.backendReason };
  },
  /** The first visit: the conversation answered with `session`, so it is saved. */
  async first(target) {
    await engine.deleteSession(SESSION);
    const messages = await conversation(target, async (m) => (await engine.tokenizeChat(m, true)).length);
    const t0 = performance.now();
    const r = await firstToken(messages, { session: SESSION });
    const list = await engine.listSessions();
    return { messages, reply: r.text, promptTokens: r.usage.prompt_tokens, session: r.session, ms: performance.now() - t0, saved: list.find((s) => s.name === SESSION) };
  },
  /** After a reload: the next turn, cold (nothing cached) or after restoring the saved session. */
  async next(messages, restore) {
    await engine.reset();
    const t0 = performance.now();
    const restored = restore ? await engine.restoreSession(SESSION) : null;
    const restoreMs = performance.now() - t0;
    const r = await firstToken(messages);
    return { ttftMs: restoreMs + r.ttftMs, restoreMs, restoredTokens: restored?.tokens ?? 0, cachedTokens: r.usage.prompt_tokens_details.cached_tokens, promptTokens: r.usage.prompt_tokens, text: r.text };
  },
};
window.benchReady = true;
