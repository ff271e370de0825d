// Dedicated Worker side of the harness: runs harness calls sent by the page.
import { api } from "./harness.js";

self.onmessage = async (e) => {
  const { id, fn, args } = e.data;
  let r;
  try {
    r = await api[fn](...args);
  } catch (err) {
    r = { ok: false, code: "HARNESS", message: String(err?.stack ?? err) };
  }
  self.postMessage({ id, r });
};
self.postMessage({ ready: true });
