// Errors thrown by browser-llm: `Error` objects with a stable `code` (see `ErrorCode` in index.d.ts).
// ERROR_CODES is Rust's `ErrorCode::ALL` (the Node tests check it against the wasm `contract()`).

export const ERROR_CODES = [
  "BAD_GGUF", "UNSUPPORTED_MODEL", "UNSUPPORTED_QUANT", "NETWORK", "INTEGRITY", "QUOTA_EXCEEDED",
  "ABORTED", "DEVICE_LOST", "GPU_UNAVAILABLE", "CONTEXT_OVERFLOW", "BUSY", "INVALID_ARGUMENT", "INTERNAL",
  "HOST_CHANGED",
];

export class BrowserLlmError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = "BrowserLlmError";
    this.code = code;
  }
}

/** Any thrown value as a BrowserLlmError (errors from the wasm module already carry a code). */
export function toBrowserLlmError(e) {
  if (e instanceof BrowserLlmError) return e;
  if (e && typeof e === "object" && typeof e.code === "string" && ERROR_CODES.includes(e.code)) {
    return new BrowserLlmError(e.code, e.message);
  }
  if (e && e.name === "AbortError") return new BrowserLlmError("ABORTED", "the operation was aborted");
  if (typeof WebAssembly !== "undefined" && e instanceof WebAssembly.RuntimeError) return crashedError(e);
  const message = e && e.message ? e.message : String(e);
  return new BrowserLlmError("INTERNAL", message, { cause: e });
}

/** A trap of the wasm module (`e`, a WebAssembly.RuntimeError) with no known cause in the input;
 * `panic`: the Rust panic's message, when the trap was one. */
export function crashedError(e, panic) {
  const what = panic ? `panic: ${panic}` : e.message;
  return new BrowserLlmError(
    "INTERNAL",
    `the engine crashed (${what}) and was disposed; load the model again. Please report this as a bug.`,
    { cause: e },
  );
}

/** INVALID_ARGUMENT: a bad option or input. */
export function invalidArgument(message) {
  return new BrowserLlmError("INVALID_ARGUMENT", message);
}

/** A random id for responses and tool calls: `prefix` + "-" (or "_") + `n` hex digits. */
export function randomId(prefix, n = 24, sep = "-") {
  return `${prefix}${sep}${Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join("")}`;
}

export function abortedError() {
  return new BrowserLlmError("ABORTED", "the operation was aborted");
}
