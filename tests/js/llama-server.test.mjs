// startLlamaServer reports a server that dies at once, naming the signal or exit code with its
// log, instead of waiting out its health timeout (a crashing build once cost 2 minutes per test
// and read as a hang). The stand-in binary needs nothing built.

import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startLlamaServer } from "./llama-server.mjs";

const crashing = fileURLToPath(new URL("fixtures/crashing-server.sh", import.meta.url));

test("a server killed by a signal is reported within seconds, naming the signal", async () => {
  const t0 = Date.now();
  await assert.rejects(startLlamaServer(crashing, "model.gguf", { timeoutMs: 60_000 }), (e) => {
    assert.match(e.message, /killed by SIGSEGV/);
    assert.match(e.message, /threadpool init/, "the server's log comes with the error");
    return true;
  });
  const s = (Date.now() - t0) / 1000;
  assert.ok(s < 10, `reported after ${s} s, not at the 60 s timeout`);
});

test("a server that exits is reported with its exit code; a missing binary says so", async () => {
  process.env.CRASH_EXIT = "3";
  try {
    await assert.rejects(startLlamaServer(crashing, "model.gguf", { timeoutMs: 60_000 }), /exited with code 3/);
  } finally {
    delete process.env.CRASH_EXIT;
  }
  await assert.rejects(startLlamaServer("/nonexistent/llama-server", "model.gguf", { timeoutMs: 60_000 }), /could not be started/);
});
