// Tool calling for chat.completions: the request's `tools` / `tool_choice` checked, the grammar
// that forces a call ("required" or a named function), and the model's calls parsed back out of
// its text. Calls are written in the Hermes format, which the package's templates teach
// (`chat::prepare_tools` in Rust) and ChatML-family models are trained on:
//   <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>

import { BrowserLlmError, invalidArgument, randomId } from "./errors.js";

const OPEN = "<tool_call>";
const CLOSE = "</tool_call>";

const invalid = invalidArgument;

/**
 * The request's tool settings: `{ tools, choice, parallel, forced }`, where `choice` is "none",
 * "auto", "required" or a function name, and `forced` is the grammar a call must match (null
 * unless a call is required). No tools: null.
 */
export function toolSettings(req) {
  const tools = req.tools;
  if (tools == null || (Array.isArray(tools) && tools.length === 0)) {
    if (req.tool_choice != null && req.tool_choice !== "none" && req.tool_choice !== "auto") {
      throw invalid("tool_choice needs tools");
    }
    return null;
  }
  if (!Array.isArray(tools)) throw invalid("tools must be an array");
  const names = tools.map((t) => {
    if (t?.type !== "function" || typeof t.function?.name !== "string" || t.function.name === "") {
      throw invalid('each tool must be {type: "function", function: {name, description?, parameters?}}');
    }
    return t.function.name;
  });
  let choice = req.tool_choice ?? "auto";
  if (typeof choice === "object") {
    if (choice?.type !== "function" || typeof choice.function?.name !== "string") {
      throw invalid('tool_choice must be "none", "auto", "required" or {type: "function", function: {name}}');
    }
    if (!names.includes(choice.function.name)) throw invalid(`tool_choice names "${choice.function.name}", which is not in tools`);
    choice = choice.function.name;
  } else if (!["none", "auto", "required"].includes(choice)) {
    throw invalid('tool_choice must be "none", "auto", "required" or {type: "function", function: {name}}');
  }
  const parallel = req.parallel_tool_calls ?? true;
  const named = typeof req.tool_choice === "object";
  const mustCall = choice === "required" ? tools : named ? tools.filter((t) => t.function.name === choice) : null;
  return { tools, choice, parallel, forced: mustCall ? callGrammar(mustCall, parallel) : null };
}

/**
 * A Lark grammar (llguidance's dialect) for one call, or several when `parallel`, of `tools`:
 * the arguments must match the tool's JSON schema. The JSON is written as the Hermes examples
 * write it (`{"name": "f", "arguments": {...}}`), with no room for runaway whitespace.
 */
function callGrammar(tools, parallel) {
  const variants = tools.map((t) => ({
    type: "object",
    properties: { name: { const: t.function.name }, arguments: t.function.parameters ?? { type: "object" } },
    required: ["name", "arguments"],
    additionalProperties: false,
  }));
  const schema = {
    "x-guidance": { whitespace_flexible: false, key_separator: ": ", item_separator: ", " },
    ...(variants.length === 1 ? variants[0] : { anyOf: variants }),
  };
  return [
    parallel ? 'start: call ("\\n" call)*' : "start: call",
    `call: "${OPEN}\\n" %json ${JSON.stringify(schema)} "\\n${CLOSE}"`,
  ].join("\n");
}


/** One `<tool_call>` body as an OpenAI tool call, or null if it is not {name, arguments}. */
function toCall(body, names) {
  let v;
  try {
    v = JSON.parse(body);
  } catch {
    return null;
  }
  const args = v?.arguments ?? v?.parameters;
  if (typeof v?.name !== "string" || !names.includes(v.name) || (args !== undefined && (typeof args !== "object" || args === null))) return null;
  return { id: randomId("call", 24, "_"), type: "function", function: { name: v.name, arguments: JSON.stringify(args ?? {}) } };
}

/**
 * The model's reply split into text and tool calls: `{ content, toolCalls }`. A block that is
 * not a well-formed call of a known tool stays in the text.
 */
export function parseToolCalls(text, settings) {
  const names = settings.tools.map((t) => t.function.name);
  const calls = [];
  let content = "";
  let at = 0;
  for (;;) {
    const open = text.indexOf(OPEN, at);
    const close = open < 0 ? -1 : text.indexOf(CLOSE, open + OPEN.length);
    if (close < 0) break;
    const call = toCall(text.slice(open + OPEN.length, close).trim(), names);
    content += text.slice(at, call ? open : close + CLOSE.length);
    if (call) calls.push(call);
    at = close + CLOSE.length;
  }
  content += text.slice(at);
  content = calls.length > 0 ? content.trim() : content;
  return { content: content === "" && calls.length > 0 ? null : content, toolCalls: calls };
}

/**
 * Splits streamed text into content and calls as it arrives: `push(text)` returns the events
 * that became final, `{ content }` or `{ call }`; text that may be the start of a call is held
 * back until it is or is not. `end()` returns what is left, as content.
 */
export class ToolCallStream {
  #buf = "";
  #names;
  constructor(settings) {
    this.#names = settings.tools.map((t) => t.function.name);
  }

  push(text) {
    this.#buf += text;
    const out = [];
    for (;;) {
      const open = this.#buf.indexOf(OPEN);
      if (open < 0) {
        // Hold back a tail that could begin "<tool_call>".
        let keep = 0;
        for (let n = Math.min(OPEN.length - 1, this.#buf.length); n > 0; n--) {
          if (OPEN.startsWith(this.#buf.slice(-n))) { keep = n; break; }
        }
        const emit = this.#buf.slice(0, this.#buf.length - keep);
        if (emit) out.push({ content: emit });
        this.#buf = this.#buf.slice(this.#buf.length - keep);
        return out;
      }
      if (open > 0) {
        out.push({ content: this.#buf.slice(0, open) });
        this.#buf = this.#buf.slice(open);
      }
      const close = this.#buf.indexOf(CLOSE);
      if (close < 0) return out;
      const call = toCall(this.#buf.slice(OPEN.length, close).trim(), this.#names);
      out.push(call ? { call } : { content: this.#buf.slice(0, close + CLOSE.length) });
      this.#buf = this.#buf.slice(close + CLOSE.length).replace(/^\s+/, "");
    }
  }

  end() {
    const rest = this.#buf;
    this.#buf = "";
    return rest ? [{ content: rest }] : [];
  }
}
