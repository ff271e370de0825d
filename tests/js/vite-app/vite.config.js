export default {
  root: new URL(".", import.meta.url).pathname,
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
  worker: { format: "es" },
  logLevel: "warn",
};
