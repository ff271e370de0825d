// A user's app: imports the package from node_modules (installed from the packed tarball) and
// lets Vite bundle it, Worker and wasm included. The test reads the result from the DOM.
import { WorkerEngine } from "browser-llm";

const out = document.getElementById("out");
const model = new URLSearchParams(location.search).get("model");
try {
  const engine = await WorkerEngine.load(model, { backend: "cpu" });
  const r = await engine.generate("The capital of France is", { temperature: 0, maxTokens: 8 });
  const { cpuThreads, cpuThreadsReason } = await engine.info();
  out.textContent = JSON.stringify({ text: r.text, tokenIds: r.tokenIds, cpuThreads, cpuThreadsReason, cores: navigator.hardwareConcurrency });
  document.body.dataset.done = "ok";
} catch (e) {
  out.textContent = `${e.code}: ${e.message}`;
  document.body.dataset.done = "error";
}
