/**
 * browser-llm: run quantized LLMs (GGUF files) entirely on the user's device: WebGPU where it
 * works, WebAssembly SIMD128 on the CPU otherwise (and in Node).
 *
 * ```ts
 * import { Engine } from "browser-llm";
 * const engine = await Engine.load("https://example.org/model.gguf", { onProgress: console.log });
 * const r = await engine.generate("Once upon a time", { maxTokens: 64, onToken: (t) => show(t.text) });
 * ```
 */

/** Stable error codes: branch on `err.code`, show `err.message` to people. */
export type ErrorCode =
  | "BAD_GGUF" | "UNSUPPORTED_MODEL" | "UNSUPPORTED_QUANT" | "NETWORK" | "INTEGRITY" | "QUOTA_EXCEEDED"
  | "ABORTED" | "DEVICE_LOST" | "GPU_UNAVAILABLE" | "CONTEXT_OVERFLOW" | "BUSY" | "INVALID_ARGUMENT" | "INTERNAL"
  /** SharedEngine: the tab holding the model closed during the call, so retry it (another tab takes over). */
  | "HOST_CHANGED";

export declare const ERROR_CODES: readonly ErrorCode[];

/** Every error browser-llm throws. */
export declare class BrowserLlmError extends Error {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown });
  readonly name: "BrowserLlmError";
  readonly code: ErrorCode;
}

/**
 * Where the model comes from. A string is a URL, a Hugging Face id
 * `hf:owner/repo/path/file.gguf` (optionally ending in `@revision`; the first part of a split
 * model, `...-00001-of-0000N.gguf`, stands for all its parts), or, in Node, a file path. In a
 * browser, an array of URLs or Files is a model split into parts (`-00001-of-0000N.gguf`), in
 * order: stored and loaded as one model. (Node reads single files only.)
 */
export type ModelSource = string | Blob | ArrayBuffer | Uint8Array | string[] | Blob[];

export interface Progress {
  /** "download" (bytes stored), "verify" (bytes hashed for `sha256`), "load" (weight bytes read into the engine). */
  phase: "download" | "verify" | "load";
  /** Bytes done so far. */
  loaded: number;
  /** Total bytes; 0 when unknown. */
  total: number;
  bytesPerSecond: number;
}

export interface LoadOptions {
  /**
   * "auto" (default): WebGPU on a hardware adapter when the model loads there, else the CPU (a
   * software adapter such as SwiftShader is skipped: the CPU is faster); `info().backendReason` says
   * which and why. "webgpu": WebGPU, or a GPU_UNAVAILABLE error (no WebGPU, no adapter or
   * device, or a GPU that failed its self-check: load with "auto" or "cpu" instead).
   * "cpu": WebAssembly SIMD128. On the GPU a self-check runs first (each op the model uses
   * against the CPU); a GPU that fails it runs nothing. A GPU device lost later (or out of memory) fails the call in flight with
   * DEVICE_LOST, and the engine loads the model again from its source (browser storage) on a new
   * device, or on the CPU, before its next call; `info().backendReason` then says so.
   */
  backend?: "auto" | "webgpu" | "cpu";
  /** Tokens of context (prompt + generated); default min(4096, the model's training context). */
  contextLength?: number;
  /**
   * What the KV cache stores (llama.cpp's `--cache-type-k/-v`): "f16" (default, as llama.cpp) or
   * "q8_0", blocks of 32 values as one f16 scale and 32 8-bit integers: 0.53x the memory of f16
   * (Gemma 3 270M at 4096 tokens: 38 MiB instead of 72), with output that differs from f16 as
   * llama.cpp's q8_0 cache does (tested against llama.cpp run with `--cache-type-k/-v q8_0`).
   * Needs heads of whole 32-value blocks (else INVALID_ARGUMENT). A saved session restores only
   * into an engine with the same cache type.
   */
  kvCache?: "f16" | "q8_0";
  /**
   * CPU threads, 1-16 (default: the cores, up to 4). More than 1 needs the threaded build, which
   * runs where the page is cross-origin isolated (COOP: same-origin, COEP: require-corp) and in
   * Node; elsewhere the CPU runs on one thread and `info().cpuThreadsReason` says why. The first
   * load in a page or Worker picks the build: `threads: 1` there keeps the single-thread builds.
   * Threads pay most in a `WorkerEngine` (measured: prefill 1.7x with 2 threads, against 1.3x
   * for an `Engine` on a page's main thread, which must spin while it waits).
   */
  threads?: number;
  onProgress?: (p: Progress) => void;
  /** Aborting rejects the load with code "ABORTED". */
  signal?: AbortSignal;
  /** Expected sha256 (hex) of the whole file; a mismatch fails with "INTEGRITY". */
  sha256?: string;
  /**
   * Browsers, URL or File sources: keep a verified copy in browser storage so the next visit loads
   * from disk with no network request (default true). Interrupted downloads resume where they
   * stopped. false: read the source directly (URLs then need HTTP Range support). Where the
   * context has no browser storage at all (neither OPFS nor the Cache API, e.g. a page over plain
   * http from a LAN address) and `store` is "auto", the model loads as with false.
   */
  cache?: boolean;
  /** Which browser store holds the copy: "auto" (default: OPFS, else the Cache API), "opfs" or "cache". */
  store?: "auto" | "opfs" | "cache";
  /** Browsers, URL sources: milliseconds a request or a read of its body may get no byte before
   * the load fails with "NETWORK" naming the URL and what stalled (default 30000; 0: no limit).
   * What was stored stays for the next load to resume. */
  inactivityTimeout?: number;
  /** Where `hf:` ids resolve: the Hugging Face Hub (default "https://huggingface.co") or a mirror. */
  hfEndpoint?: string;
  /** Browsers: ask the browser to keep this site's storage under pressure
   * (`navigator.storage.persist()`; Chrome decides silently, Firefox may ask the user). Default false;
   * `storageUsage().persisted` says whether it was granted. */
  persist?: boolean;
}

export interface WorkerLoadOptions extends LoadOptions {
  /** A Worker started from this package's `worker.js`, for bundlers that need it explicit; one engine
   * per Worker (a Worker that already serves an engine is refused with INVALID_ARGUMENT). */
  worker?: Worker;
  /** Milliseconds the Worker may go without a sign of life (a reply, an event, or an answer to the
   * ping sent every few seconds) while calls are pending, before every pending call fails with
   * INTERNAL and the Worker is stopped: a Worker killed by the browser (out of memory) sends no
   * error event. Default 60000; 0 waits forever. */
  heartbeatTimeout?: number;
}

export interface SamplingOptions {
  /** Tokens to generate at most (default 256). */
  maxTokens?: number;
  /** 0 = greedy (default 0.8). */
  temperature?: number;
  /** Keep the k most likely tokens; 0 disables (default 40). */
  topK?: number;
  /** Nucleus sampling mass, (0, 1] (default 0.95). */
  topP?: number;
  /** Drop tokens less likely than minP x the best one (default 0.05). */
  minP?: number;
  /** llama.cpp-style repetition penalty; 1 disables (default 1). */
  repetitionPenalty?: number;
  /** OpenAI-style penalty per occurrence, in [-2, 2] (default 0). */
  frequencyPenalty?: number;
  /** OpenAI-style penalty for any occurrence, in [-2, 2] (default 0). */
  presencePenalty?: number;
  /** How many recent tokens the penalties look at (default 64). */
  penaltyLastN?: number;
  /** Same seed, same prompt, same options: same text. Random when omitted. */
  seed?: number;
  /** Stop when the text contains one of these (not included in the result). */
  stop?: string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
}

/** OpenAI's `response_format`. */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name?: string; description?: string; schema: object; strict?: boolean } };

export interface OutputConstraint {
  /**
   * JSON output: any object ("json_object") or valid under a JSON schema ("json_schema"; always
   * strict: the output always parses and validates). Compiled by llguidance into a token mask.
   */
  responseFormat?: ResponseFormat;
  /** A grammar the output matches: llguidance's Lark dialect, or llama.cpp's GBNF (`root ::= ...`). */
  grammar?: string;
  /** A regular expression the whole output matches. */
  regex?: string;
}

/** One token's log-probability, in OpenAI's `logprobs.content[]` shape. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs?: { token: string; logprob: number; bytes: number[] }[];
}

export interface GenerateOptions extends SamplingOptions, OutputConstraint {
  /** Add the model's BOS token (default: yes, unless the prompt text already starts with it). */
  addSpecial?: boolean;
  /**
   * When the prompt and maxTokens do not fit the context: "error" (default: CONTEXT_OVERFLOW for a
   * prompt that does not fit; a generation that fills the context ends with finishReason
   * "length"); for a chat prompt "drop-oldest": the oldest turns (never system messages, never
   * the last user turn) go until it fits, and the result's `droppedMessages` says how many;
   * "shift": generation goes on past a full context as llama.cpp's context shift does (the BOS
   * token stays, the oldest half of the other cached tokens is forgotten, the rest keeps its
   * cache with its positions moved; `timings.contextShifts` counts them). The prompt must fit.
   */
  contextOverflow?: "error" | "drop-oldest" | "shift";
  /**
   * Prompt-lookup speculation (CPU and WebGPU): drafts the tokens that followed the context's
   * last n-gram (`ngram`, default 4, down to 2) earlier in the prompt or the reply, up to
   * `maxDraft` (default 8), and verifies them in one batched pass. Omitted: on for greedy
   * decoding (temperature 0) on the CPU; `true` or an object: also when sampling and on WebGPU
   * (unmeasured on real GPUs so far: a timed controller stops drafting where it does not pay);
   * `false`: off. The tokens are the same as without it (on the GPU up to near-ties);
   * `timings.acceptedPerPass` says how many came per pass. It pays where the reply repeats its
   * context (rewriting or quoting a text, editing code, structured output reusing names), and
   * costs little elsewhere.
   */
  speculation?: boolean | { ngram?: number; maxDraft?: number };
  /** Report each token's log-probability (from the model's raw distribution). */
  logprobs?: boolean;
  /** With logprobs: also the 0-20 most likely tokens at each step. */
  topLogprobs?: number;
  /** Aborting ends the generation; the result then has finishReason "abort" and the text so far. */
  signal?: AbortSignal;
  /** Called for each generated token with the text that became final (possibly ""). */
  onToken?: (t: TokenChunk) => void;
  /** Called as the prompt runs, in chunks. */
  onPrefill?: (p: { done: number; total: number }) => void;
}

export interface TokenChunk {
  text: string;
  /** null for the last chunk, which flushes text held back (a partial stop string). */
  tokenId: number | null;
  /** With logprobs. */
  logprob?: TokenLogprob;
  /** A chat prompt's reply, in pieces that became final with this chunk's text. */
  deltas?: ChatReplyDelta[];
}

/** A piece of a chat reply: text, or one whole tool call (its `index` among the reply's calls). */
export type ChatReplyDelta =
  | { content: string }
  | { toolCall: { index: number; id: string; type: "function"; function: { name: string; arguments: string } } };

/**
 * A chat as `generate`'s prompt: the reply to `messages` is generated, with tools as in
 * `chat.completions` (described to the model, forced by a grammar for "required" or a named
 * function, and read back from the reply). Messages as in `chat.completions`.
 */
export interface ChatPrompt {
  messages: ChatMessage[];
  tools?: Tool[];
  tool_choice?: "none" | "auto" | "required" | { type: "function"; function: { name: string } };
  parallel_tool_calls?: boolean;
}

export interface Timings {
  prefillTokens: number;
  prefillMs: number;
  prefillTokensPerSecond: number;
  decodeTokens: number;
  decodeMs: number;
  decodeTokensPerSecond: number;
  /** Decoded tokens per forward pass (1 without speculation). */
  acceptedPerPass: number;
  /** Context shifts done (contextOverflow: "shift"). */
  contextShifts: number;
}

export interface GenerateResult {
  text: string;
  tokenIds: number[];
  /** "stop": end-of-generation token or stop string; "length": maxTokens or a full context; "abort". */
  finishReason: "stop" | "length" | "abort";
  usage: { promptTokens: number; completionTokens: number; totalTokens: number; cachedTokens: number };
  timings: Timings;
  /** With logprobs: one per generated token. */
  logprobs?: TokenLogprob[];
}

/** `generate` of a chat prompt: the reply read for tool calls. */
export interface ChatGenerateResult extends Omit<GenerateResult, "finishReason"> {
  /** With contextOverflow "drop-oldest": how many of the oldest messages were left out. */
  droppedMessages?: number;
  /** "tool_calls" where the reply called tools (and stopped by itself). */
  finishReason: "stop" | "length" | "abort" | "tool_calls";
  /** The reply without its tool calls (null when it is only calls). */
  content: string | null;
  toolCalls: { id: string; type: "function"; function: { name: string; arguments: string } }[];
  /** The pieces held back until the end: a streamed reply's last deltas. */
  deltas: ChatReplyDelta[];
}

export interface ModelInfo {
  architecture: string;
  name: string | null;
  parameters: number;
  fileSize: number;
  /** [tensor type, bytes], largest first. */
  quantization: [string, number][];
  contextLength: number;
  /** The `kvCache` load option in use, and the cache's bytes at `contextLength`. */
  kvCache: "f16" | "q8_0";
  kvCacheBytes: number;
  trainingContextLength: number;
  vocabSize: number;
  layers: number;
  embeddingSize: number;
  /** Where the model runs: the `backend` load option's name for it. */
  backend: "webgpu" | "cpu";
  backendReason: string;
  /**
   * The WebAssembly kernels the CPU path runs: "relaxed-simd" (the single-thread build, where the
   * engine has relaxed SIMD: Chrome, Edge, Firefox) or "simd128" (the threaded build, and Safari,
   * Node 20 on one thread). Same tokens either way.
   */
  cpuKernels: "relaxed-simd" | "simd128";
  /** Threads the CPU backend's matrix products run on (the calling thread included). */
  cpuThreads: number;
  /** On the CPU with one thread: why not more (e.g. the page is not cross-origin isolated); else null. */
  cpuThreadsReason: string | null;
  /**
   * Bytes of WebAssembly memory the package's module holds now, for all engines of this page or
   * Worker (wasm memory never shrinks, so this is also the peak so far).
   */
  wasmMemoryBytes: number;
  /** "gguf" (the file's own template) or the built-in one used. */
  chatTemplate: string;
  /** How embeddings pool the tokens' states. */
  pooling: "mean" | "cls" | "last";
  bosToken: string | null;
  eosToken: string | null;
}

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; /** JSON text */ arguments: string };
}

export interface Tool {
  type: "function";
  function: { name: string; description?: string; /** JSON schema */ parameters?: object };
}

export interface ChatMessage {
  /** "developer" is read as "system". */
  role: "system" | "developer" | "user" | "assistant" | "tool";
  /** Text, or OpenAI's content parts (text parts only); null for an assistant turn of only tool calls. */
  content: string | { type: "text"; text: string }[] | null;
  /** An assistant turn's calls (as a reply gave them). */
  tool_calls?: ToolCall[];
  /** A tool message: the call it answers. */
  tool_call_id?: string;
  name?: string;
}

/**
 * OpenAI's chat completion request. Every field of OpenAI's schema is accepted; those that do not
 * apply to a local model (user, metadata, store, service_tier, prompt_cache_key, ...) are ignored,
 * and those it cannot honor (n > 1, logit_bias, audio, non-text modalities) fail. Unknown fields fail.
 */
export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  model?: string;
  max_tokens?: number;
  max_completion_tokens?: number;
  /** (default 1, as OpenAI's; the one default that differs from `generate`'s) */
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  seed?: number;
  stop?: string | string[];
  frequency_penalty?: number;
  presence_penalty?: number;
  repetition_penalty?: number;
  n?: 1;
  /** include_usage: a last chunk with `choices: []` and the usage (others carry `usage: null`). */
  stream_options?: { include_usage?: boolean };
  response_format?: ResponseFormat;
  /** Extensions: a Lark/GBNF grammar or a regex the reply matches. */
  grammar?: string;
  regex?: string;
  logprobs?: boolean;
  top_logprobs?: number;
  /**
   * Tools the model may call. Templates that take `tools` get them; for others they are described
   * in the system message and calls are written as `<tool_call>{"name", "arguments"}</tool_call>`.
   */
  tools?: Tool[];
  /** "auto" (default), "none", "required", or a named function; the last two force a call whose arguments match its schema. */
  tool_choice?: "none" | "auto" | "required" | { type: "function"; function: { name: string } };
  parallel_tool_calls?: boolean;
  user?: string;
  metadata?: Record<string, string>;
  store?: boolean;
  signal?: AbortSignal;
  /**
   * Extension: a saved session's name. It is restored before the request (so a conversation that
   * continues after a page reload reuses its KV cache instead of running its prompt again) and
   * saved after it; the response's `session` says what happened.
   */
  session?: string;
  /** Extension: "drop-oldest" leaves out the oldest turns until the request fits the context
   * (`dropped_messages` in the response says how many); "shift" goes on past a full context
   * (GenerateOptions.contextOverflow); "error" (default) fails with CONTEXT_OVERFLOW. */
  context_overflow?: "error" | "drop-oldest" | "shift";
  /** As GenerateOptions.speculation (not sent to a remote server). */
  speculation?: boolean | { ngram?: number; maxDraft?: number };
  [ignored: string]: unknown;
}

/** What a request with `session` did (`ChatCompletion.session`, and the last chunk's). */
export interface SessionOutcome {
  name: string;
  /** Tokens restored from the saved session (0: there was none, or it was refused). */
  restoredTokens: number;
  /** Tokens saved after the request. */
  savedTokens: number;
  /** The saved session was refused (INTEGRITY: damaged or of another model, and removed; CONTEXT_OVERFLOW): the request ran without it. */
  error?: { code: ErrorCode; message: string };
}

/** A saved session's record. */
export interface SavedSession {
  /** The model's identity (its GGUF header and the ends of its tensor data, hashed). */
  model: string;
  name: string;
  bytes: number;
  /** Tokens whose keys and values it holds. */
  tokens: number;
  savedAtMs: number;
  usedAtMs: number;
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** cached_tokens: prompt tokens whose KV cache was reused. */
  prompt_tokens_details: { cached_tokens: number };
}

/** OpenAI's values, plus "abort": the call's AbortSignal fired (or the consumer left the stream). */
export type FinishReason = "stop" | "length" | "tool_calls" | "abort";

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: 0;
    message: { role: "assistant"; content: string | null; refusal: null; tool_calls?: ToolCall[] };
    finish_reason: FinishReason;
    logprobs: { content: TokenLogprob[]; refusal: null } | null;
  }[];
  usage: CompletionUsage;
  timings: Timings;
  /** With `session` in the request. */
  session?: SessionOutcome;
  /** With `context_overflow: "drop-oldest"`: how many of the oldest messages were left out. */
  dropped_messages?: number;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  /** Empty on the usage chunk (stream_options.include_usage). */
  choices: {
    index: 0;
    delta: { role?: "assistant"; content?: string; tool_calls?: (ToolCall & { index: number })[] };
    finish_reason: FinishReason | null;
    logprobs: { content: TokenLogprob[]; refusal: null } | null;
  }[];
  /** With stream_options.include_usage: null, except on the last chunk. */
  usage?: CompletionUsage | null;
  /** On the chunk with the finish_reason. */
  timings?: Timings;
  /** On the chunk with the finish_reason, with `session` in the request. */
  session?: SessionOutcome;
  /** On the chunk with the finish_reason, with `context_overflow: "drop-oldest"`. */
  dropped_messages?: number;
}

export interface Chat {
  completions: {
    create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
    create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
    create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
  };
}

/**
 * What Engine and WorkerEngine share. Calls on one engine run one at a time, in call order: a
 * call made while another runs waits its turn (it never fails with BUSY). A conversation that
 * continues the previous prompt reuses its KV cache for the shared prefix.
 */
export interface EmbeddingRequest {
  input: string | string[];
  model?: string;
  /** "float" (default) or "base64" (little-endian float32 bytes). */
  encoding_format?: "float" | "base64";
  /** Must equal the model's embedding size if given. */
  dimensions?: number;
  user?: string;
  signal?: AbortSignal;
}

export interface EmbeddingResponse {
  object: "list";
  data: { object: "embedding"; index: number; embedding: number[] | string }[];
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export interface Embeddings {
  /**
   * One L2-normalized vector per input: the model's final hidden states pooled as its GGUF says
   * (`info().pooling`; the mean for chat models, which do not say). Runs from position 0, so a
   * chat turn after it re-reads its prompt (the KV cache is dropped).
   */
  create(req: EmbeddingRequest): Promise<EmbeddingResponse>;
}

export interface LlmEngine {
  readonly chat: Chat;
  readonly embeddings: Embeddings;
  /** One text's embedding (what `embeddings.create` runs per input). */
  embed(text: string): Promise<{ embedding: Float32Array; tokens: number }>;
  generate(prompt: ChatPrompt, options?: GenerateOptions): Promise<ChatGenerateResult>;
  generate(prompt: string | number[], options?: GenerateOptions): Promise<GenerateResult>;
  /** Tokens as they come; leaving the loop early aborts the generation. Returns the GenerateResult. */
  stream(prompt: ChatPrompt, options?: Omit<GenerateOptions, "onToken"> & { onToken?: GenerateOptions["onToken"] }): AsyncGenerator<TokenChunk, ChatGenerateResult, undefined>;
  stream(prompt: string | number[], options?: Omit<GenerateOptions, "onToken"> & { onToken?: GenerateOptions["onToken"] }): AsyncGenerator<TokenChunk, GenerateResult, undefined>;
  /** The prompt text the model's chat template makes of `messages`. */
  applyChatTemplate(messages: ChatMessage[], addGenerationPrompt?: boolean, tools?: Tool[]): Promise<string>;
  /**
   * The token ids `chat.completions` runs for `messages`: the template's markup becomes control
   * tokens, message contents never do (text that spells `<|im_start|>` stays text), so content
   * from users or third parties cannot forge turns (nor can tool names, arguments or
   * descriptions). `generate({ messages, tools })` does this without the ids leaving wasm.
   */
  tokenizeChat(messages: ChatMessage[], addGenerationPrompt?: boolean, tools?: Tool[]): Promise<number[]>;
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): Promise<number[]>;
  detokenize(ids: ArrayLike<number>): Promise<string>;
  info(): Promise<ModelInfo>;
  /** Forget the KV cache. */
  reset(): Promise<void>;
  /**
   * Save the conversation the engine holds (token ids and KV cache, in hashed chunks) in browser
   * storage as `name` of this model. `maxSessionBytes` caps all saved sessions together (default
   * 512 MiB; least recently used evicted first; one larger by itself is QUOTA_EXCEEDED).
   */
  saveSession(name: string, options?: { maxSessionBytes?: number }): Promise<SavedSession>;
  /**
   * Restore a saved session: the next prompt that starts with its tokens reuses them. `null` when
   * there is none; a damaged one, or one of another model or cache shape, is INTEGRITY and removed;
   * one longer than the context is CONTEXT_OVERFLOW. `alreadyHeld`: the engine held these tokens
   * already (only the header was read).
   */
  restoreSession(name: string): Promise<(SavedSession & { alreadyHeld: boolean }) | null>;
  /** This model's saved sessions, most recently used first. */
  listSessions(): Promise<SavedSession[]>;
  /** Remove a saved session; whether there was one. */
  deleteSession(name: string): Promise<boolean>;
  /** The session file of what the engine holds (to keep elsewhere, e.g. on disk in Node). */
  exportSession(): Promise<Uint8Array>;
  /** Restore a session file from `exportSession` (checked as `restoreSession` checks it). */
  importSession(bytes: Uint8Array): Promise<{ tokens: number; alreadyHeld: boolean }>;
  /** Free the model; later calls fail. A generation in flight stops at its next step (finishReason "abort"). */
  dispose(): Promise<void>;
}

/** The engine on the calling thread (Node, or a Worker you manage). */
export interface Engine extends LlmEngine {}
export declare const Engine: {
  readonly prototype: Engine;
  load(source: ModelSource, options?: LoadOptions): Promise<Engine>;
};

/** The same interface, with the model in a dedicated Worker (recommended in pages). */
export interface WorkerEngine extends LlmEngine {
  /** Stop the worker at once; pending calls fail with "ABORTED". */
  terminate(): void;
}
export declare const WorkerEngine: {
  readonly prototype: WorkerEngine;
  load(source: ModelSource, options?: WorkerLoadOptions): Promise<WorkerEngine>;
};

/**
 * The same interface, with one model for all the tabs of an origin: the first tab to load it holds
 * it (in its Worker); the others send their calls there and stream the answers. Calls run one at a
 * time in arrival order; an abort stops only its own call. When the holding tab closes, the next
 * tab loads the model from browser storage and takes over; calls in flight then fail with
 * HOST_CHANGED (retry them). Browsers only (Web Locks, BroadcastChannel); the source must be a URL
 * or a Hugging Face id (tabs find each other by it, or by `sharedName`).
 */
export interface SharedEngine extends LlmEngine {
  /** `shared`: whether this tab holds the model, and how many tabs use it. */
  info(): Promise<ModelInfo & { shared: { host: boolean; tabs: number } }>;
}
export declare const SharedEngine: {
  readonly prototype: SharedEngine;
  load(source: string, options?: WorkerLoadOptions & { sharedName?: string }): Promise<SharedEngine>;
};

/** A model in browser storage. */
export interface CachedModel {
  /** Identifies the model: its URL (the first part's), or `file:<name>:<size>:<lastModified>` for a local file. */
  key: string;
  /** The URL (or key) to show. */
  url: string;
  sources: string[];
  /** Bytes of the whole model. */
  size: number;
  /** Bytes stored so far (equals `size` when complete). */
  storedBytes: number;
  /** false: a download that stopped part-way (the next load resumes it). */
  complete: boolean;
  sha256: string | null;
  lastUsedMs: number;
  store: "opfs" | "cache";
}

/**
 * Download a model into browser storage without loading it (a prefetch): resumable, verified, and
 * found there by a later `Engine.load` of the same source with no network request. Browsers only.
 */
export declare function downloadModel(
  source: string | string[] | Blob | Blob[],
  options?: Pick<LoadOptions, "sha256" | "cache" | "store" | "signal" | "onProgress" | "inactivityTimeout" | "hfEndpoint" | "persist">,
): Promise<{ key: string; size: number; store: "opfs" | "cache" | null; sha256: string | null }>;

/** What `preflight` says about a model and this device, before any download. */
export interface Preflight {
  fileBytes: number;
  architecture: string;
  /** [tensor type, bytes]: exact from the tensor infos (`quantizationExact`), or, for a remote
   * file read only as far as its first bytes, the type of most weights with the file's size. */
  quantization: [string, number][];
  quantizationExact: boolean;
  /** The context a load with these options gets, and its KV cache's bytes (of the `kvCache` type). */
  contextLength: number;
  kvBytes: number;
  /** Room in browser storage for the file (true when it is stored already; null: no storage, or `cache: false`). */
  fitsQuota: boolean | null;
  /** Weights and KV cache within WebAssembly's 4 GiB (CPU) or the GPU's buffer limits, and why. */
  fitsMemory: boolean;
  memoryReason: string;
  /** The backend a load with these options would pick, and why (the GPU's self-check runs at load). */
  backend: "cpu" | "webgpu";
  backendReason: string;
  /** Whether the browser keeps this site's storage under pressure (null: it cannot say). */
  persisted: boolean | null;
  /** The model is in browser storage already (nothing was requested). */
  stored: boolean;
  /** Bytes of the file read for its header. */
  headerBytesRead: number;
  /** From a short timed run of the model's own products on `backend` (a few hundred ms). */
  estimate: { decodeTokensPerSecond: number; prefillTokensPerSecond: number; ms: number };
}

/**
 * What loading `source` with `options` would take, before any download: a URL is read only as
 * far as its header's first bytes (under 1% of the file), a stored model not at all. In Node a
 * file path or URL (Range requests).
 */
export declare function preflight(source: ModelSource, options?: LoadOptions): Promise<Preflight>;

/** Models kept in browser storage (complete and partial). Browsers only. */
export declare function listCachedModels(): Promise<CachedModel[]>;
/** Delete a cached model by key; deleting a missing key is not an error. */
export declare function deleteCachedModel(key: string): Promise<void>;
/** Storage used by this site and its quota, in bytes; `persisted`: the browser will not evict it. */
export declare function storageUsage(): Promise<{ usage: number; quota: number; persisted: boolean }>;

/**
 * A `fetch` that serves OpenAI's HTTP API from `engine`, in-process: POST /v1/chat/completions
 * (JSON, or server-sent events when `stream`), POST /v1/completions, POST /v1/embeddings,
 * GET /v1/models. For the official SDK:
 * `new OpenAI({ apiKey: "local", baseURL: "http://local/v1", fetch: openaiFetch(engine), dangerouslyAllowBrowser: true })`.
 * Aborts stop the generation; errors are HTTP errors with OpenAI's `{ error: { message, type, code } }` body.
 */
export function openaiFetch(engine: LlmEngine): (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/**
 * Define `LanguageModel` (Chrome's Prompt API: `availability`, `params`, `create` with a download
 * `monitor`, `prompt`, `promptStreaming`, `append`, `measureContextUsage`, `contextUsage` /
 * `contextWindow`, `clone`, `destroy`; `responseConstraint` as a JSON schema or RegExp) on
 * `target` (default `globalThis`) unless one exists (`force` replaces it), running on this
 * package. `engineOrLoader`: an engine, or a function that loads one on the first `create()`
 * (given `{ onProgress }` for the download). Returns the class.
 */
export function installLanguageModel(
  engineOrLoader: LlmEngine | ((o: { onProgress: (p: Progress) => void }) => Promise<LlmEngine>),
  options?: { target?: object; force?: boolean },
): unknown;

/**
 * A Vercel AI SDK provider (`@ai-sdk/provider` v4: LanguageModelV4, EmbeddingModelV4) on this
 * package: `const local = createBrowserLlm(engine)`, then `generateText({ model: local(), ... })`,
 * `streamText`, structured output (`Output.object`, through constrained decoding), native tool
 * calls, `abortSignal`, and `embedMany({ model: local.embeddingModel(), ... })`. `engineOrLoader`:
 * an engine, or a function that loads one on first use. Typed loosely here so the package does not
 * depend on `@ai-sdk/provider`; the objects follow its v4 types.
 */
export function createBrowserLlm(
  engineOrLoader: LlmEngine | (() => Promise<LlmEngine>),
  options?: { modelId?: string },
): ((modelId?: string) => any) & { languageModel(modelId?: string): any; embeddingModel(modelId?: string): any; textEmbeddingModel(modelId?: string): any };

/** Which side served a routed request, and why. */
export interface Route { side: "local" | "remote"; reason: string }

/**
 * The `chat.completions` interface over the local engine and, when `remote` is configured, an
 * OpenAI-compatible server (llama.cpp's server, vLLM). Local first; remote when the local model
 * cannot load, when a request does not fit the local context, or when the request says
 * `route: "remote"`. Nothing goes remote unless `remote` is set. Every response (and stream chunk)
 * carries `route`.
 */
export function createRouter(options: {
  local?: LlmEngine | (() => Promise<LlmEngine>);
  remote?: { baseURL: string; apiKey?: string; model?: string; fetch?: typeof fetch };
  policy?: "local-first" | "local-only" | "remote-first";
}): {
  chat: {
    completions: {
      create(req: ChatCompletionRequest & { route?: "auto" | "local" | "remote"; stream: true }): Promise<AsyncIterable<ChatCompletionChunk & { route: Route }>>;
      create(req: ChatCompletionRequest & { route?: "auto" | "local" | "remote"; stream?: false }): Promise<ChatCompletion & { route: Route }>;
    };
  };
  localEngine(): Promise<LlmEngine | null>;
};
