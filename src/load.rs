//! One load path for every caller (the wasm facade, the CLI, tests): a GGUF header plus a
//! [`TensorSource`] become an [`AnyEngine`] on the backend that [`BackendChoice`] picks.
//!
//! The backend policy lives here and nowhere else:
//! - `cpu`: the CPU backend (WebAssembly SIMD128 in the browser).
//! - `gpu` (`"webgpu"` in JS): the GPU backend or an error (`GPU_UNAVAILABLE` when there is no
//!   usable adapter or it fails the self-check; `DEVICE_LOST` when the device is lost or runs out
//!   of memory while the model loads); software adapters are allowed (tests run on lavapipe and
//!   SwiftShader).
//! - `auto`: the GPU when a hardware adapter exists and the model loads on it; otherwise the CPU.
//!   A software adapter (SwiftShader, lavapipe) is skipped, since the CPU backend is faster than
//!   it. A GPU that fails while loading with `DEVICE_LOST` (out of memory, a lost device) also
//!   falls back; any other error (a bad file) is the caller's.
//!
//! [`Loaded::reason`] says in one sentence which backend runs and why, for `info().backendReason`
//! and the CLI.
//!
//! A GPU device can be lost after the load (the browser resets it, the driver crashes, the tab
//! goes to the background on some mobiles) or run out of memory: the call in flight fails with
//! `DEVICE_LOST`, and [`reload_after_loss`] loads the model again from its source (browser
//! storage in the browser) on a new device, or on the CPU where no GPU can be had.

use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{DispatchRecord, GpuBackend, GpuLayout, GpuOptions};
use crate::selfcheck;
use crate::backend::{Backend, BackendStats, TensorSource};
use crate::engine::{Engine, GenerateOptions, Generating, Step};
use crate::error::{Error, ErrorCode, Result};
use crate::gguf::Gguf;
use crate::model::ModelConfig;
use crate::tokenizer::Tokenizer;

/// Which backend to run on (see the module docs for the policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl BackendChoice {
    /// The names JS uses, in the order documented.
    pub const NAMES: [&'static str; 3] = ["auto", "webgpu", "cpu"];

    /// `"auto"`, `"webgpu"`, `"cpu"` (the JS names; the CLI's `gpu` is its own spelling).
    pub fn parse(s: &str) -> Result<BackendChoice> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "webgpu" => Ok(BackendChoice::Gpu),
            "cpu" => Ok(BackendChoice::Cpu),
            _ => Err(Error::invalid_argument(format!("backend must be one of auto, webgpu, cpu; got {s:?}"))),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub backend: BackendChoice,
    /// Tokens of context; `None`: min(4096, the model's training context).
    pub n_ctx: Option<usize>,
    /// What the KV cache stores (`kvCache`).
    pub kv_type: crate::backend::KvType,
    /// CPU threads (native builds; `None`: all cores).
    pub cpu_threads: Option<usize>,
    pub gpu: GpuOptions,
}

impl LoadOptions {
    /// The KV cache these options ask for.
    pub fn cache(&self) -> crate::engine::CacheOptions {
        crate::engine::CacheOptions { n_ctx: self.n_ctx, kv_type: self.kv_type }
    }
}

/// The engine on whichever backend runs it.
pub enum AnyEngine {
    Cpu(Engine<CpuBackend>),
    Gpu(Engine<GpuBackend>),
}

/// `with_engine!(any, e => expr)`: `expr` with `e` bound to the concrete engine.
macro_rules! with_engine {
    ($any:expr, $e:ident => $body:expr) => {
        match $any {
            AnyEngine::Cpu($e) => $body,
            AnyEngine::Gpu($e) => $body,
        }
    };
}

impl AnyEngine {
    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        with_engine!(self, e => &e.tokenizer)
    }
    pub fn config(&self) -> &ModelConfig {
        with_engine!(self, e => e.config())
    }
    pub fn n_ctx(&self) -> usize {
        with_engine!(self, e => e.n_ctx())
    }
    /// "cpu" or "gpu".
    pub fn backend_name(&self) -> &'static str {
        with_engine!(self, e => e.backend_name())
    }
    /// The GPU adapter, in one line; `None` on the CPU.
    pub fn device(&self) -> Option<String> {
        match self {
            AnyEngine::Cpu(_) => None,
            AnyEngine::Gpu(e) => Some(e.backend.ctx.describe()),
        }
    }
    /// Threads the CPU backend's matrix products use (1 on the GPU).
    pub fn cpu_threads(&self) -> usize {
        match self {
            AnyEngine::Cpu(e) => e.backend.threads(),
            AnyEngine::Gpu(_) => 1,
        }
    }
    pub fn stats(&self) -> BackendStats {
        with_engine!(self, e => e.backend.stats())
    }
    /// The GPU backend's kernel layout, whether it uses subgroups, and the dispatches of its last
    /// submit (for a decoded token, the whole token: the launch audit); `None` on the CPU.
    pub fn gpu_audit(&self) -> Option<(GpuLayout, bool, Vec<DispatchRecord>)> {
        match self {
            AnyEngine::Cpu(_) => None,
            AnyEngine::Gpu(e) => Some((e.backend.ctx.layout, e.backend.ctx.subgroups, e.backend.last_submit().to_vec())),
        }
    }
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        with_engine!(self, e => e.tokenize(text))
    }
    pub fn begin(&mut self, prompt: &[u32], opts: &GenerateOptions) -> Result<Generating> {
        with_engine!(self, e => e.begin(prompt, opts))
    }
    pub async fn step(&mut self, g: &mut Generating) -> Result<Option<Step>> {
        with_engine!(self, e => e.step(g).await)
    }
    pub fn reset(&mut self) {
        with_engine!(self, e => e.reset())
    }
    pub fn cached_tokens(&self) -> &[u32] {
        with_engine!(self, e => e.cached_tokens())
    }
    pub fn kv_shape(&self) -> crate::backend::KvShape {
        with_engine!(self, e => e.kv_shape())
    }
    /// See [`Engine::shift_context`].
    pub fn shift_context(&mut self) -> Result<bool> {
        with_engine!(self, e => e.shift_context())
    }
    pub async fn save_session(&mut self, model: &str, layer: impl FnMut(Vec<u8>)) -> Result<Vec<u8>> {
        with_engine!(self, e => e.save_session(model, layer).await)
    }
    pub async fn load_session<F, Fut>(&mut self, model: &str, size: u64, keep_held: bool, read: F) -> Result<(usize, bool)>
    where
        F: FnMut(u64, u64) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>>>,
    {
        with_engine!(self, e => e.load_session(model, size, keep_held, read).await)
    }
    pub async fn export_session(&mut self, model: &str) -> Result<Vec<u8>> {
        with_engine!(self, e => e.export_session(model).await)
    }
    pub fn import_session(&mut self, file: &[u8], model: &str) -> Result<usize> {
        with_engine!(self, e => e.import_session(file, model))
    }
    /// See [`Engine::embed`].
    pub async fn embed(&mut self, text: &str) -> Result<(Vec<f32>, usize)> {
        with_engine!(self, e => e.embed(text).await)
    }
}

/// A loaded engine and why it runs where it does.
pub struct Loaded {
    pub engine: AnyEngine,
    pub reason: String,
}

#[cfg(target_arch = "wasm32")]
const CPU: &str = "CPU backend (WebAssembly SIMD128)";
#[cfg(not(target_arch = "wasm32"))]
const CPU: &str = "CPU backend";

/// Load the model whose header is `gguf` from `src` on the backend `opts.backend` picks.
///
/// On the GPU, a self-check runs first (`selfcheck`: every op variant the model
/// uses against the CPU reference, remembered per adapter and driver, and one real layer's
/// products at full size), then the loaded
/// model's first tokens (a two-token prefill and a decoded token) must give finite logits; they
/// also create the pipelines the self-check did not, so none is compiled after load. A GPU that fails either runs nothing: `auto` loads on
/// the CPU and says why; `gpu` fails with GPU_UNAVAILABLE and why.
pub async fn load<S: TensorSource>(gguf: &Gguf, src: &S, opts: &LoadOptions) -> Result<Loaded> {
    let (backend, auto) = match pick_backend(opts).await? {
        Picked::Cpu(reason) => return load_cpu(gguf, src, opts, reason).await,
        Picked::Gpu { backend, auto } => (backend, auto),
    };
    let adapter = backend.ctx.describe();
    match load_gpu(backend, gguf, src, opts).await {
        Ok((engine, checked)) => {
            let how = if auto { "GPU backend (auto)" } else { "GPU backend, as requested" };
            Ok(Loaded { engine: AnyEngine::Gpu(engine), reason: format!("{how}; adapter: {adapter}; {checked}") })
        }
        Err(GpuLoad::Failed(why)) if auto => load_cpu(gguf, src, opts, format!("{CPU}: the GPU ({adapter}) {why}")).await,
        Err(GpuLoad::Failed(why)) => Err(Error::new(ErrorCode::GpuUnavailable, format!("the GPU ({adapter}) {why}"))),
        Err(GpuLoad::Error(e)) if auto && e.code == ErrorCode::DeviceLost => {
            load_cpu(gguf, src, opts, format!("{CPU}: the model did not load on the GPU ({})", e.message)).await
        }
        Err(GpuLoad::Error(e)) => Err(e),
    }
}

/// The backend the policy picks before any weight is read.
pub enum Picked {
    /// The CPU, and why (a sentence for `backendReason`).
    Cpu(String),
    /// A GPU adapter and device; `auto`: picked by `auto` (a failed self-check falls back to the
    /// CPU), not asked for.
    Gpu { backend: GpuBackend, auto: bool },
}

/// The first half of the policy (the module docs): `cpu`, or a GPU device where one can be had
/// (`gpu`: or `GPU_UNAVAILABLE`; `auto`: a hardware adapter, else the CPU and why). The second
/// half, the self-check and the model's first tokens, is [`load`]'s.
pub async fn pick_backend(opts: &LoadOptions) -> Result<Picked> {
    match opts.backend {
        BackendChoice::Cpu => Ok(Picked::Cpu(format!("{CPU}, as requested"))),
        BackendChoice::Gpu => Ok(Picked::Gpu { backend: GpuBackend::new(&opts.gpu).await?, auto: false }),
        BackendChoice::Auto => match GpuBackend::new(&opts.gpu).await {
            Err(e) => Ok(Picked::Cpu(format!("{CPU}: the GPU could not be used ({})", e.message))),
            Ok(b) if b.ctx.is_software() => {
                let adapter = b.ctx.describe();
                Ok(Picked::Cpu(format!("{CPU}: the only GPU adapter is a software renderer ({adapter}), slower than the CPU")))
            }
            Ok(backend) => Ok(Picked::Gpu { backend, auto: true }),
        },
    }
}

/// Load the model again after its GPU engine failed with `lost` (a lost device, the GPU out of
/// memory): on a new GPU device where one can be had and passes the self-check, as `opts.backend`
/// allows; else on the CPU, whatever `opts.backend` says, since an app whose engine was running
/// is better served by a slower one than by none. The reason says it was loaded again and why.
pub async fn reload_after_loss<S: TensorSource>(gguf: &Gguf, src: &S, opts: &LoadOptions, lost: &Error) -> Result<Loaded> {
    let loaded = match load(gguf, src, opts).await {
        Err(e) if matches!(e.code, ErrorCode::DeviceLost | ErrorCode::GpuUnavailable) => {
            load_cpu(gguf, src, opts, format!("{CPU}: the GPU could not be used again ({})", e.message)).await?
        }
        r => r?,
    };
    Ok(Loaded { reason: format!("{}; loaded again after the GPU failed: {}", loaded.reason, lost.message), ..loaded })
}

enum GpuLoad {
    /// The GPU computed wrong results: why, as the end of a sentence about it.
    Failed(String),
    Error(Error),
}

/// The self-check, the model's weights, its first tokens (a prefill and a decoded token): the
/// engine and what the check said.
async fn load_gpu<S: TensorSource>(mut backend: GpuBackend, gguf: &Gguf, src: &S, opts: &LoadOptions) -> std::result::Result<(Engine<GpuBackend>, String), GpuLoad> {
    let checked = if opts.gpu.skip_self_check {
        "self-check skipped".to_string()
    } else {
        let needs = self_check_needs(gguf).map_err(GpuLoad::Error)?;
        let small = match selfcheck::check(&mut backend, &needs, opts.gpu.self_check_fault).await {
            Ok(passed) => passed,
            Err(why) => return Err(GpuLoad::Failed(format!("failed its self-check: {why}"))),
        };
        match selfcheck::check_layer(&mut backend, gguf, src, opts.gpu.full_size_fault).await {
            Ok(layer) => format!("self-check {small}; {layer}"),
            Err(why) => return Err(GpuLoad::Failed(format!("failed its self-check at the model's own sizes: {why}"))),
        }
    };
    let mut engine = Engine::load_from(backend, gguf, src, opts.cache()).await.map_err(GpuLoad::Error)?;
    match engine.check_first_tokens().await {
        Ok(()) => Ok((engine, checked)),
        Err(e) if e.code == ErrorCode::DeviceLost => Err(GpuLoad::Failed(format!("failed on the model's first tokens: {}", e.message))),
        Err(e) => Err(GpuLoad::Error(e)),
    }
}

/// What the self-check must cover for the model in `gguf`: the formats of its products (every
/// two-dimensional layer tensor and the output head; the embedding table when it is tied), its
/// embedding table, its config.
fn self_check_needs(gguf: &Gguf) -> Result<selfcheck::Needs> {
    let config = ModelConfig::from_gguf(gguf)?;
    let embd = gguf.tensor("token_embd.weight").ok_or_else(|| Error::unsupported_model("tensor 'token_embd.weight' is missing"))?;
    let tied = gguf.tensor("output.weight").is_none();
    let product_types = gguf
        .tensors
        .iter()
        .filter(|t| t.dims.len() == 2 && (t.name.starts_with("blk.") || t.name == "output.weight" || (tied && t.name == "token_embd.weight")))
        .map(|t| t.ty)
        .collect();
    Ok(selfcheck::Needs { product_types, embedding_type: embd.ty, config, rope_freqs: gguf.tensor("rope_freqs.weight").is_some() })
}

async fn load_cpu<S: TensorSource>(gguf: &Gguf, src: &S, opts: &LoadOptions, reason: String) -> Result<Loaded> {
    // The kernels' optimizing compile starts now and overlaps the load (see `warm_up`).
    #[cfg(target_arch = "wasm32")]
    crate::quant::packed::warm_up(&gguf.tensors.iter().filter(|t| t.dims.len() == 2).map(|t| t.ty).collect::<Vec<_>>())?;
    let backend = match opts.cpu_threads {
        Some(n) => CpuBackend::with_threads(n),
        None => CpuBackend::new(),
    };
    #[allow(unused_mut)]
    let mut engine = Engine::load_from(backend, gguf, src, opts.cache()).await?;
    // Natively every function is compiled ahead of time: nothing to warm.
    #[cfg(target_arch = "wasm32")]
    engine.warm_up(13).await?;
    Ok(Loaded { engine: AnyEngine::Cpu(engine), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse_and_unknown_ones_are_invalid_arguments() {
        assert_eq!(BackendChoice::parse("auto").unwrap(), BackendChoice::Auto);
        assert_eq!(BackendChoice::parse("webgpu").unwrap(), BackendChoice::Gpu);
        assert_eq!(BackendChoice::parse("gpu").unwrap_err().code, ErrorCode::InvalidArgument);
        assert_eq!(BackendChoice::parse("cpu").unwrap(), BackendChoice::Cpu);
        for name in BackendChoice::NAMES {
            BackendChoice::parse(name).unwrap();
        }
        assert_eq!(BackendChoice::parse("GPU").unwrap_err().code, ErrorCode::InvalidArgument);
    }
}
