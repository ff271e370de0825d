// OpenAI's chat messages in the shape chat templates take (`chat::ChatMessage` in Rust): the
// conversion `generate` applies to a chat prompt's messages, on whichever thread runs the engine.

import { invalidArgument as invalid } from "./errors.js";

/** A message's content as text: a string, or OpenAI's content parts (text parts only). */
function contentText(m) {
  const c = m?.content;
  if (typeof c === "string") return c;
  if (c == null) return "";
  if (Array.isArray(c)) {
    return c.map((p) => {
      if (p?.type === "text" || p?.type === "input_text") return String(p.text ?? "");
      throw invalid(`message content parts of type "${p?.type}" are not supported (text only)`);
    }).join("");
  }
  return String(c);
}

/**
 * OpenAI messages as the template's: `developer` is the system role of newer OpenAI models;
 * assistant `tool_calls` and tool messages' `tool_call_id` are kept.
 */
export function templateMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) throw invalid("messages must be a non-empty array of { role, content }");
  return messages.map((m) => {
    const out = { role: m?.role === "developer" ? "system" : m?.role, content: contentText(m) };
    if (m?.role === "assistant" && Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      out.tool_calls = m.tool_calls.map((c) => {
        if (typeof c?.function?.name !== "string") throw invalid("each tool call needs function.name");
        return { id: c.id, type: "function", function: { name: c.function.name, arguments: c.function.arguments ?? "{}" } };
      });
    }
    if (m?.role === "tool") {
      if (typeof m.tool_call_id !== "string") throw invalid("a tool message needs tool_call_id");
      out.tool_call_id = m.tool_call_id;
    }
    if (typeof m?.name === "string") out.name = m.name;
    return out;
  });
}
