const root = new URL(".", import.meta.url).pathname;

export default {
  root,
  build: {
    outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 1024,
    // Two pages: index.html (generate) and adapters.html (the OpenAI SDK, the AI SDK, the Prompt API).
    rolldownOptions: { input: { index: `${root}index.html`, adapters: `${root}adapters.html` } },
  },
  worker: { format: "es" },
  logLevel: "warn",
};
