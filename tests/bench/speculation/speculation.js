// The speculation benchmark page (driven by ../speculation.mjs through playwright): the package as
// an app uses it, a WorkerEngine on 1 CPU thread, greedy decoding with speculation off and on (the
// default) on prompts whose reply repeats its context (rewriting a text, editing code) and on
// free-form ones. `window.bench.run(model)` returns one row per prompt.

import { WorkerEngine } from "/pkg/index.js";

const TEXT = `The old lighthouse keeper climbed the narrow stairs every evening, lit the great lamp, and \
watched the ships pass safely through the dark strait. In winter the storms came from the north and \
the waves broke over the rocks below the tower, but the light never failed. When the keeper grew old, \
his daughter learned to trim the wick and wind the clockwork that turned the lens, and she kept the \
light burning for another forty years.`;
const TYPOS = TEXT.replace("narrow", "narow").replace("safely", "safley").replace("failed", "faild").replace("daughter", "dauhgter");
const CODE = `def parse_range(header, size):
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes":
        return None
    start, _, end = spec.partition("-")
    if start == "":
        length = int(end)
        return max(0, size - length), size - 1
    start = int(start)
    end = int(end) if end else size - 1
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)
`;

// SmolLM2 is an instruct model (chat template); Gemma 3 270M here is a base model (plain text).
const PROMPTS = {
  "smollm2-135m-instruct.gguf": [
    ["rewrite", "copy", { messages: [{ role: "user", content: `Fix the spelling mistakes in this text. Reply with the corrected text only.\n\n${TYPOS}` }] }],
    ["code", "copy", { messages: [{ role: "user", content: `Rename the function parse_range to parse_byte_range. Reply with the whole code only.\n\n${CODE}` }] }],
    ["story", "free", { messages: [{ role: "user", content: "Write a short story about a lighthouse keeper." }] }],
    ["explain", "free", { messages: [{ role: "user", content: "Explain how suspension bridges carry their load." }] }],
  ],
  "gemma-3-270m-q4_k_m.gguf": [
    ["rewrite", "copy", { prompt: `Original text:\n${TYPOS}\n\nThe same text with its spelling corrected:\nThe old lighthouse keeper` }],
    ["code", "copy", { prompt: `# byte_range.py\n${CODE}\n\n# The same function, renamed to parse_byte_range:\ndef parse_byte_range(header, size):\n` }],
    ["story", "free", { prompt: "Once upon a time, in a small village by the sea," }],
    ["explain", "free", { prompt: "Suspension bridges carry their load by" }],
  ],
};

const logEl = document.getElementById("log");
const log = (m) => {
  console.log(`[speculation] ${m}`);
  logEl.textContent += m + "\n";
};

async function once(engine, p, tokens, speculation) {
  const opts = { maxTokens: tokens, temperature: 0, ...(speculation ? {} : { speculation: false }) };
  // A chat prompt goes through the model's chat template (as chat.completions does).
  return engine.generate(p.messages ? { messages: p.messages } : p.prompt, opts);
}

window.bench = {
  async run(model, tokens, rounds) {
    const engine = await WorkerEngine.load(`/models/${model}`, { backend: "cpu", threads: 1, cache: false, contextLength: 2048 });
    const info = await engine.info();
    log(`${model}: ${info.backend}, ${info.cpuThreads} thread, ${info.cpuKernels} kernels`);
    await once(engine, PROMPTS[model][0][2], 8, false); // warm-up
    const rows = [];
    for (const [name, kind, p] of PROMPTS[model]) {
      const runs = { off: [], on: [] };
      for (let r = 0; r < rounds; r++) {
        for (const mode of r % 2 ? ["on", "off"] : ["off", "on"]) {
          await engine.reset();
          runs[mode].push(await once(engine, p, tokens, mode === "on"));
        }
      }
      const rate = (x) => x.timings.decodeTokens / (x.timings.decodeMs / 1000);
      const med = (xs) => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1];
      const off = med(runs.off.map(rate));
      const on = med(runs.on.map(rate));
      const same = runs.on.every((x) => JSON.stringify(x.tokenIds) === JSON.stringify(runs.off[0].tokenIds));
      const row = { model, name, kind, tokens: runs.on[0].tokenIds.length, off, on, ratio: on / off, perPass: runs.on[0].timings.acceptedPerPass, same };
      log(`${model} ${name} (${kind}): ${row.tokens} tokens, ${off.toFixed(1)} -> ${on.toFixed(1)} tok/s (${row.ratio.toFixed(2)}x), ${row.perPass.toFixed(2)} per pass, same tokens: ${same}`);
      rows.push(row);
    }
    await engine.dispose();
    return { rows, kernels: info.cpuKernels };
  },
};
window.benchReady = true;
