// A Rust panic inside the module's asynchronous calls, in a plain Node process (run by
// node.test.mjs): the load's and the step's promises must settle with a typed error, the process
// must not exit on the uncaught trap, and the next load must work on a fresh module. Prints one
// JSON line with what each call gave; exits 1 on anything else.
import { Engine } from "browser-llm";

// The smaller model when there is one (four loads).
const MODEL = process.env.BROWSER_LLM_CHAT_MODEL ?? process.env.BROWSER_LLM_MODEL;
const { loadWasm } = await import(new URL("./node_modules/browser-llm/runtime.js", import.meta.url));
const within = (p) => Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error("the call never settled")), 30000))]);
const outcome = async (p) => {
  try {
    await within(p);
    return { code: "resolved" };
  } catch (e) {
    return { code: e.code ?? e.name, message: e.message, causeIsTrap: e.cause instanceof WebAssembly.RuntimeError };
  }
};
const fail = (why) => { console.log(why); process.exit(1); };

const bystander = await Engine.load(MODEL, { backend: "cpu", contextLength: 128 });
const rt1 = await loadWasm();
const r = {};
r.load = await outcome(Engine.load(MODEL, { backend: "cpu", contextLength: 128, __panicAfterAwait: "load" }));
if (!rt1.crashed) fail("the instance that trapped in load was not retired");
r.bystander = await outcome(bystander.generate("x", { maxTokens: 1 }));

const e = await Engine.load(MODEL, { backend: "cpu", contextLength: 128, __panicAfterAwait: "step" });
const rt2 = await loadWasm();
if (rt2 === rt1) fail("no fresh module after the trap in load");
r.step = await outcome(e.generate("Hello", { maxTokens: 4 }));
if (!rt2.crashed) fail("the instance that trapped in a step was not retired");
r.afterStep = await outcome(e.generate("x", { maxTokens: 1 }));

const fresh = await Engine.load(MODEL, { backend: "cpu", contextLength: 128 });
r.freshTokens = (await fresh.generate("The capital of France is", { temperature: 0, maxTokens: 4 })).tokenIds.length;
await fresh.dispose();
await new Promise((res) => setTimeout(res, 20));
r.listenersLeft = process.listenerCount("uncaughtException");
r.pendingLeft = rt1.pending + rt2.pending;
console.log(JSON.stringify(r));
