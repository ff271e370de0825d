// The Prompt API polyfill inside a Worker: `LanguageModel` on the worker's global, loading an
// Engine (in this worker) on first use, with download progress.
import { Engine, installLanguageModel } from "browser-llm";

self.onmessage = async ({ data: { model } }) => {
  try {
    installLanguageModel(({ onProgress }) => Engine.load(model, { backend: "cpu", contextLength: 512, onProgress }));
    const before = await self.LanguageModel.availability();
    const progress = [];
    const s = await self.LanguageModel.create({
      temperature: 0, topK: 1,
      monitor: (m) => m.addEventListener("downloadprogress", (e) => progress.push(e.loaded)),
    });
    const reply = await s.prompt("Say hello.");
    self.postMessage({ before, after: await self.LanguageModel.availability(), progress: progress.length, lastProgress: progress.at(-1), reply });
  } catch (e) {
    self.postMessage({ error: `${e?.code ?? e?.name}: ${e?.message}` });
  }
};
