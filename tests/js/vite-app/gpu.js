// A WebGPU device lost under a running engine (the browser resets GPUs, drivers crash): the app
// sees DEVICE_LOST for the call in flight and the engine goes on by itself. The page keeps the
// devices the package creates (a wrapped requestDevice) so it can destroy them, as a GPU reset
// would, and can refuse new ones. Each step's result goes to the DOM as JSON; tests/js/vite.test.mjs
// checks them.
import { Engine } from "browser-llm";

const out = document.getElementById("out");
const model = new URLSearchParams(location.search).get("model");
const devices = [];
let refuseDevices = false;
const requestDevice = GPUAdapter.prototype.requestDevice;
GPUAdapter.prototype.requestDevice = async function (...args) {
  if (refuseDevices) throw new DOMException("refused by the test page", "OperationError");
  const device = await requestDevice.apply(this, args);
  devices.push(device);
  return device;
};
const modelRequests = async () => (await (await fetch("/__stats")).json()).modelRequests;
const prompt = "The capital of France is";
const greedy = { temperature: 0, maxTokens: 6 };
const failure = async (promise) => {
  try {
    await promise;
    return null;
  } catch (e) {
    return { code: e.code, message: e.message };
  }
};

try {
  const engine = await Engine.load(model, { backend: "webgpu", contextLength: 256 });
  const r = {};
  r.first = { tokenIds: (await engine.generate(prompt, greedy)).tokenIds, info: await engine.info(), devices: devices.length };
  const requestsBefore = await modelRequests();
  // The device is lost while a generation runs.
  let tokens = 0;
  r.lostMidGeneration = await failure(engine.generate(prompt, {
    ...greedy, maxTokens: 32, onToken: () => { if (++tokens === 2) devices.at(-1).destroy(); },
  }));
  r.lostMidGeneration.tokensBefore = tokens;
  // The next call runs on a new device, the weights read again from browser storage.
  r.recovered = { tokenIds: (await engine.generate(prompt, greedy)).tokenIds, info: await engine.info(), devices: devices.length };
  r.recovered.modelRequests = (await modelRequests()) - requestsBefore;
  // Lost again between calls, and no new device to be had: the CPU takes over.
  refuseDevices = true;
  devices.at(-1).destroy();
  r.lostBetweenCalls = await failure(engine.generate(prompt, greedy));
  r.onCpu = { tokenIds: (await engine.generate(prompt, greedy)).tokenIds, info: await engine.info() };
  const chat = await engine.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4, temperature: 0 });
  r.onCpu.chat = chat.choices[0].message.content;
  // What an engine loaded on the CPU from the start computes (the GPU's tokens may differ from
  // the CPU's at a near-tie).
  const cpu = await Engine.load(model, { backend: "cpu", contextLength: 256 });
  r.cpuEngine = { tokenIds: (await cpu.generate(prompt, greedy)).tokenIds };
  out.textContent = JSON.stringify(r);
  document.body.dataset.done = "ok";
} catch (e) {
  out.textContent = `${e.code}: ${e.message}\n${e.stack}`;
  document.body.dataset.done = "error";
}
