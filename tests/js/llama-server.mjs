// Starting llama.cpp's own server (`llama-server`, built by pkg-scripts/llama-server) for the
// router tests, and telling at once when it dies: a crash (a signal) or an exit is reported within
// the 100 ms poll that notices it, with the signal or exit code and the server's log, instead of
// being waited out as "not healthy".

import { spawn } from "node:child_process";
import { createServer } from "node:net";

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * `bin` (llama-server) on 127.0.0.1 with `model` and the chat template file `template` (a
 * context of `ctx` tokens, `extra` arguments after the others); resolves
 * once /health answers, rejects as soon as the process is gone (naming the signal or exit code)
 * or after `timeoutMs` without an answer.
 */
export async function startLlamaServer(bin, model, { template, timeoutMs = 120_000, ctx = 2048, extra = [] } = {}) {
  const port = await freePort();
  const args = [
    "-m", model, "--host", "127.0.0.1", "--port", String(port), "-c", String(ctx), "-np", "1", "-t", "2",
    "--slots", "--no-webui", ...extra,
  ];
  if (template) args.push("--jinja", "--chat-template-file", template);
  const proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  // `close` comes after the process ended and its stderr drained, so the log is whole. A process
  // killed by a signal has exitCode null: the signal is what says it crashed.
  let gone = null;
  proc.stderr.on("data", (d) => { log = (log + d).slice(-20_000); });
  proc.on("error", (e) => { gone ??= `could not be started (${e.message})`; });
  proc.on("close", (code, signal) => { gone ??= signal ? `was killed by ${signal}` : `exited with code ${code}`; });
  const origin = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gone) throw new Error(`llama-server ${gone} before it answered /health (${bin}):\n${log}`);
    if (Date.now() > deadline) {
      proc.kill();
      throw new Error(`llama-server did not answer /health in ${timeoutMs / 1000} s:\n${log}`);
    }
    const ok = await fetch(`${origin}/health`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    origin,
    remote: { baseURL: `${origin}/v1`, apiKey: "test-key", model: "smollm2" },
    /** Whether the server's one slot is generating. */
    busy: async () => (await (await fetch(`${origin}/slots`)).json()).some((s) => s.is_processing),
    close: () => proc.kill(),
  };
}
