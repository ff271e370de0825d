// OpenAI-style `engine.embeddings.create({ input })`, built on any engine's `embed(text)` (the
// same code serves Engine and WorkerEngine).

import { BrowserLlmError, invalidArgument } from "./errors.js";

const KEYS = new Set(["input", "model", "encoding_format", "dimensions", "user", "signal"]);

const invalid = invalidArgument;

/** Float32 values as base64 of their little-endian bytes (OpenAI's `encoding_format: "base64"`). */
function base64(values) {
  const bytes = new Uint8Array(Float32Array.from(values).buffer);
  if (typeof Buffer !== "undefined") return Buffer.from(bytes).toString("base64");
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** `engine.embeddings`: OpenAI's `create`, one vector per input text, L2-normalized. */
export function createEmbeddings(engine) {
  async function create(req) {
    if (!req || typeof req !== "object") throw invalid("create() needs a request object");
    for (const k of Object.keys(req)) if (!KEYS.has(k)) throw invalid(`unknown embeddings option "${k}"`);
    const inputs = typeof req.input === "string" ? [req.input] : req.input;
    if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((t) => typeof t === "string")) {
      throw invalid("input must be a string or a non-empty array of strings (token-id inputs are not supported)");
    }
    const format = req.encoding_format ?? "float";
    if (format !== "float" && format !== "base64") throw invalid('encoding_format must be "float" or "base64"');
    const info = await engine.info();
    if (req.dimensions != null && req.dimensions !== info.embeddingSize) {
      throw invalid(`this model's embeddings have ${info.embeddingSize} dimensions; dimensions cannot change it`);
    }
    const data = [];
    let tokens = 0;
    for (const [index, text] of inputs.entries()) {
      if (req.signal?.aborted) throw new BrowserLlmError("ABORTED", "the operation was aborted");
      const r = await engine.embed(text);
      tokens += r.tokens;
      const values = Array.from(r.embedding);
      data.push({ object: "embedding", index, embedding: format === "base64" ? base64(values) : values });
    }
    return {
      object: "list", data, model: req.model ?? info.name ?? info.architecture,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  }
  return { create };
}
