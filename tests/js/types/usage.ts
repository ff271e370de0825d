// Type-checks the package's declarations against every option of the public API
// (`tsc --noEmit -p types`). Never run; it only has to compile.

import {
  Engine, WorkerEngine, BrowserLlmError, ERROR_CODES, openaiFetch, installLanguageModel, createBrowserLlm, createRouter, listCachedModels, deleteCachedModel, storageUsage,
  type ErrorCode, type LlmEngine, type Progress, type GenerateResult, type ChatCompletion, type ChatCompletionChunk,
  type ModelInfo, type CachedModel, type TokenChunk, type Tool, type ToolCall, type TokenLogprob,
  type ChatGenerateResult, type ChatReplyDelta,
} from "browser-llm";

async function everything(file: File, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
  const onProgress = (p: Progress): void => {
    const phase: "download" | "verify" | "load" | "compile" = p.phase;
    console.log(phase, p.loaded / (p.total || 1), p.bytesPerSecond);
  };
  const a: Engine = await Engine.load("https://example.org/m.gguf", {
    backend: "auto", contextLength: 2048, onProgress, signal, sha256: "ab".repeat(32), cache: true, store: "opfs",
  });
  const b: WorkerEngine = await WorkerEngine.load(file, { backend: "webgpu", worker: new Worker("w.js", { type: "module" }) });
  await Engine.load(bytes, { backend: "cpu" });
  await Engine.load(bytes.buffer as ArrayBuffer);
  await WorkerEngine.load(["https://example.org/m-00001-of-00002.gguf", "https://example.org/m-00002-of-00002.gguf"]);

  for (const engine of [a, b] as LlmEngine[]) {
    const r: GenerateResult = await engine.generate("Once upon a time", {
      maxTokens: 64, temperature: 0.7, topK: 40, topP: 0.95, minP: 0.05, repetitionPenalty: 1.1, frequencyPenalty: 0.1,
      presencePenalty: 0.1, penaltyLastN: 64, seed: 42, stop: ["\n\n"], ignoreEos: false, addSpecial: true, signal,
      onToken: (t: TokenChunk) => console.log(t.text, t.tokenId),
      onPrefill: (p) => console.log(p.done, p.total),
    });
    const reason: "stop" | "length" | "abort" = r.finishReason;
    const reply: ChatGenerateResult = await engine.generate({
      messages: [{ role: "developer", content: "Be brief." }, { role: "user", content: [{ type: "text", text: "Weather?" }] }],
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
      tool_choice: "auto", parallel_tool_calls: false,
    }, { maxTokens: 32, onToken: (t: TokenChunk) => t.deltas?.forEach((d: ChatReplyDelta) => console.log("content" in d ? d.content : d.toolCall.function.name)) });
    const why: "stop" | "length" | "abort" | "tool_calls" = reply.finishReason;
    const said: string | null = reply.content;
    console.log(why, said, reply.toolCalls.map((c) => JSON.parse(c.function.arguments)));
    const constrained = await engine.generate("JSON:", {
      responseFormat: { type: "json_schema", json_schema: { name: "x", schema: { type: "object" }, strict: true } },
      logprobs: true, topLogprobs: 3,
    });
    const lp: TokenLogprob[] | undefined = constrained.logprobs;
    console.log(lp?.[0].top_logprobs?.[0].logprob);
    await engine.generate("x", { grammar: 'root ::= "a"' });
    await engine.generate("x", { regex: "[0-9]+", responseFormat: { type: "text" } });
    const tools: Tool[] = [{ type: "function", function: { name: "f", description: "d", parameters: { type: "object" } } }];
    const t = await engine.chat.completions.create({
      messages: [{ role: "developer", content: [{ type: "text", text: "Hi" }] }, { role: "user", content: "Call f" }],
      tools, tool_choice: { type: "function", function: { name: "f" } }, parallel_tool_calls: false,
      response_format: { type: "text" }, logprobs: true, top_logprobs: 2, user: "u", metadata: { k: "v" }, store: false,
      stream_options: { include_usage: true },
    });
    const calls: ToolCall[] | undefined = t.choices[0].message.tool_calls;
    const followUp = [{ role: "assistant" as const, content: null, tool_calls: calls }, { role: "tool" as const, tool_call_id: "call_1", content: "42" }];
    await engine.chat.completions.create({ messages: followUp, tools, tool_choice: "auto" });
    installLanguageModel(engine);
    const local = createBrowserLlm(engine, { modelId: "m" });
    const router = createRouter({ local: engine, remote: { baseURL: "http://127.0.0.1:8080/v1", apiKey: "k", model: "m" }, policy: "local-first" });
    const routed = await router.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], route: "auto" });
    console.log(routed.route.side, routed.route.reason);
    console.log(local().modelId, local.embeddingModel().provider, createBrowserLlm(async () => engine).languageModel());
    installLanguageModel(async ({ onProgress }) => Engine.load("m.gguf", { onProgress }), { target: {}, force: true });
    const f: typeof fetch = openaiFetch(engine);
    console.log((await f("http://local/v1/models")).status);
    const emb = await engine.embeddings.create({ input: ["a", "b"], encoding_format: "float", model: "m" });
    console.log(emb.data[1].embedding, emb.usage.prompt_tokens, (await engine.embed("x")).embedding.length, (await engine.info()).pooling);
    console.log(t.choices[0].finish_reason === "tool_calls", t.usage.prompt_tokens_details.cached_tokens, await engine.tokenizeChat(followUp, true, tools));
    console.log(reason, r.text, r.tokenIds.length, r.usage.cachedTokens, r.timings.decodeTokensPerSecond);
    await engine.generate([2, 818, 5279]);

    const it = engine.stream("Hello", { maxTokens: 8 });
    for await (const t of it) console.log(t.text);

    const c: ChatCompletion = await engine.chat.completions.create({
      messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }],
      max_tokens: 32, max_completion_tokens: 32, temperature: 0.7, top_p: 0.9, top_k: 40, min_p: 0.05, seed: 1,
      stop: ["\n"], frequency_penalty: 0, presence_penalty: 0, repetition_penalty: 1, n: 1, model: "m", signal,
    });
    console.log(c.choices[0].message.content, c.choices[0].finish_reason, c.usage.total_tokens);
    const s = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], stream: true, stop: "x" });
    for await (const chunk of s as AsyncIterable<ChatCompletionChunk>) console.log(chunk.choices[0].delta.content, chunk.usage?.prompt_tokens);

    const prompt: string = await engine.applyChatTemplate([{ role: "user", content: "Hi" }], true);
    const promptIds: number[] = await engine.tokenizeChat([{ role: "user", content: "Hi" }], true);
    const ids: number[] = await engine.tokenize(prompt, { addSpecial: false, parseSpecial: true });
    const text: string = await engine.detokenize(ids);
    const info: ModelInfo = await engine.info();
    console.log(text, promptIds.length, info.architecture, info.backend, info.backendReason, info.quantization[0][0], info.chatTemplate);
    await engine.reset();
    await engine.dispose();
  }
  b.terminate();

  const cached: CachedModel[] = await listCachedModels();
  for (const m of cached) if (!m.complete) await deleteCachedModel(m.key);
  const u = await storageUsage();
  console.log(u.usage, u.quota, u.persisted);

  try {
    await Engine.load("bad");
  } catch (e) {
    if (e instanceof BrowserLlmError) {
      const code: ErrorCode = e.code;
      console.log(code, e.message, ERROR_CODES.includes(code));
    }
  }
}

// @ts-expect-error: misspelled options are compile errors
Engine.load("x", { backnd: "cpu" });
// @ts-expect-error: only the three backends exist
Engine.load("x", { backend: "gpu" });

export { everything };
