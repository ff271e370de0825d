const root = new URL(".", import.meta.url).pathname;

export default {
  root,
  build: {
    outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 1024,
    // Pages: index.html (generate), adapters.html (the OpenAI SDK, the AI SDK, the Prompt API),
    // gpu.html (a WebGPU device lost under a running engine).
    rolldownOptions: { input: { index: `${root}index.html`, adapters: `${root}adapters.html`, gpu: `${root}gpu.html` } },
  },
  worker: { format: "es" },
  logLevel: "warn",
};
