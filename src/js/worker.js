// Worker entry: hosts one Engine and answers WorkerEngine's messages.
//   request:  { id, op, args }            op: load | generate | embed | applyChatTemplate | tokenizeChat | tokenize |
//                                              detokenize | info | reset | saveSession | restoreSession |
//                                              listSessions | deleteSession | exportSession | importSession | dispose | abort
//   events:   { id, event: "progress" | "token" | "prefill", data }
//   reply:    { id, result } or { id, error: { code, message, trapped } }  (trapped: the module trapped; not a lost GPU device, which is DEVICE_LOST)
// `abort` ({ args: { target } }) aborts the call with id `target`; `ping` is answered with
// { id: 0, event: "pong" } (WorkerEngine's heartbeat). Both are handled at once because generation
// yields to the event loop between steps.

import { Engine } from "./engine.js";
import { toBrowserLlmError } from "./errors.js";

let engine = null;
const controllers = new Map();

const post = (msg) => self.postMessage(msg);

async function handle(id, op, args, signal) {
  if (op === "load") {
    if (engine) await engine.dispose();
    engine = null;
    engine = await Engine.load(args.source, {
      ...args.options, signal, onProgress: (p) => post({ id, event: "progress", data: p }),
    });
    return engine.info();
  }
  if (!engine) throw toBrowserLlmError({ code: "INVALID_ARGUMENT", message: "no model is loaded in this worker" });
  switch (op) {
    case "generate":
      return engine.generate(args.prompt, {
        ...args.options, signal,
        onToken: (t) => post({ id, event: "token", data: t }),
        onPrefill: (p) => post({ id, event: "prefill", data: p }),
      });
    case "embed": return engine.embed(args.text);
    case "applyChatTemplate": return engine.applyChatTemplate(args.messages, args.addGenerationPrompt, args.tools);
    case "tokenizeChat": return engine.tokenizeChat(args.messages, args.addGenerationPrompt, args.tools);
    case "tokenize": return engine.tokenize(args.text, args.options);
    case "detokenize": return engine.detokenize(args.ids);
    case "info": return engine.info();
    case "reset": return engine.reset();
    case "saveSession": return engine.saveSession(args.name, args.options);
    case "restoreSession": return engine.restoreSession(args.name);
    case "listSessions": return engine.listSessions();
    case "deleteSession": return engine.deleteSession(args.name);
    case "exportSession": return engine.exportSession();
    case "importSession": return engine.importSession(args.bytes);
    case "dispose": { const e = engine; engine = null; return e.dispose(); }
    default: throw toBrowserLlmError({ code: "INVALID_ARGUMENT", message: `unknown operation ${op}` });
  }
}

self.onmessage = async (ev) => {
  const { id, op, args } = ev.data ?? {};
  if (op === "abort") {
    controllers.get(args?.target)?.abort();
    return;
  }
  if (op === "ping") {
    post({ id: 0, event: "pong" });
    return;
  }
  const ctl = new AbortController();
  controllers.set(id, ctl);
  try {
    post({ id, result: await handle(id, op, args ?? {}, ctl.signal) });
  } catch (e) {
    const err = toBrowserLlmError(e);
    // `trapped`: the engine's module trapped, so this Worker is not used again.
    const trapped = typeof WebAssembly !== "undefined" && err.cause instanceof WebAssembly.RuntimeError;
    post({ id, error: { code: err.code, message: err.message, trapped } });
  } finally {
    controllers.delete(id);
  }
};
