// browser-llm: run quantized LLMs (GGUF) entirely in the browser (and in Node, on the CPU).
// See index.d.ts for the documented API.

export { Engine } from "./engine.js";
export { WorkerEngine } from "./worker-engine.js";
export { SharedEngine } from "./shared-engine.js";
export { BrowserLlmError, ERROR_CODES } from "./errors.js";
export { downloadModel, listCachedModels, deleteCachedModel, storageUsage, preflight } from "./storage.js";
export { openaiFetch } from "./openai-fetch.js";
export { installLanguageModel } from "./prompt-api.js";
export { createBrowserLlm } from "./ai-sdk.js";
export { createRouter } from "./router.js";
