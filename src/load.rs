//! One load path for every caller (the wasm facade, the CLI, tests): a GGUF header plus a
//! [`TensorSource`] become an [`AnyEngine`] on the backend that [`BackendChoice`] picks.
//!
//! The backend policy lives here and nowhere else:
//! - `cpu`: the CPU backend (WebAssembly SIMD128 in the browser).
//! - `gpu` (`"webgpu"` in JS): the GPU backend or an error (`DEVICE_LOST` when there is no usable
//!   adapter); software adapters are allowed (tests run on lavapipe and SwiftShader).
//! - `auto`: the GPU when a hardware adapter exists and the model loads on it; otherwise the CPU.
//!   A software adapter (SwiftShader, lavapipe) is skipped, since the CPU backend is faster than
//!   it. A GPU that fails while loading with `DEVICE_LOST` (out of memory, a lost device) also
//!   falls back; any other error (a bad file) is the caller's.
//!
//! [`Loaded::reason`] says in one sentence which backend runs and why, for `info().backendReason`
//! and the CLI.

use std::sync::Arc;

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuOptions};
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
    /// CPU threads (native builds; `None`: all cores).
    pub cpu_threads: Option<usize>,
    pub gpu: GpuOptions,
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
pub async fn load<S: TensorSource>(gguf: &Gguf, src: &S, opts: &LoadOptions) -> Result<Loaded> {
    match opts.backend {
        BackendChoice::Cpu => load_cpu(gguf, src, opts, format!("{CPU}, as requested")).await,
        BackendChoice::Gpu => {
            let backend = GpuBackend::new(&opts.gpu).await?;
            let reason = format!("GPU backend, as requested; adapter: {}", backend.ctx.describe());
            let engine = Engine::load_from(backend, gguf, src, opts.n_ctx).await?;
            Ok(Loaded { engine: AnyEngine::Gpu(engine), reason })
        }
        BackendChoice::Auto => {
            let backend = match GpuBackend::new(&opts.gpu).await {
                Ok(b) => b,
                Err(e) => return load_cpu(gguf, src, opts, format!("{CPU}: the GPU could not be used ({})", e.message)).await,
            };
            let adapter = backend.ctx.describe();
            if backend.ctx.is_software() {
                drop(backend);
                let why = format!("{CPU}: the only GPU adapter is a software renderer ({adapter}), slower than the CPU");
                return load_cpu(gguf, src, opts, why).await;
            }
            match Engine::load_from(backend, gguf, src, opts.n_ctx).await {
                Ok(engine) => Ok(Loaded { engine: AnyEngine::Gpu(engine), reason: format!("GPU backend (auto); adapter: {adapter}") }),
                Err(e) if e.code == ErrorCode::DeviceLost => {
                    load_cpu(gguf, src, opts, format!("{CPU}: the model did not load on the GPU ({})", e.message)).await
                }
                Err(e) => Err(e),
            }
        }
    }
}

async fn load_cpu<S: TensorSource>(gguf: &Gguf, src: &S, opts: &LoadOptions, reason: String) -> Result<Loaded> {
    let backend = match opts.cpu_threads {
        Some(n) => CpuBackend::with_threads(n),
        None => CpuBackend::new(),
    };
    let engine = Engine::load_from(backend, gguf, src, opts.n_ctx).await?;
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
