//! `browser-llm generate --model PATH --prompt TEXT --max-tokens N [sampling flags] [--json]`.
//!
//! Streams text to stdout as it is generated; with `--json` prints one line instead:
//! `{"prompt_ids":[...],"ids":[...],"text":"...","finish_reason":"...","backend":"cpu|gpu",
//! "device":..., "dispatches_per_token":..., "submits_per_token":..., "timings":{...}}`
//! (per-token counters are over decoded tokens; zero on the CPU). `--backend cpu|gpu|auto`.

use std::io::Write;
use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::backend::gpu::{GpuBackend, GpuOptions};
use browser_llm::backend::{Backend, BackendStats};
use browser_llm::engine::{Engine, GenerateOptions, Step};
use browser_llm::sampling::SamplingParams;
use browser_llm::Error;

use crate::args::Args;
use crate::{CliError, CliResult};

pub fn sampling_from_args(args: &Args) -> Result<SamplingParams, CliError> {
    let d = SamplingParams::default();
    let p = SamplingParams {
        temperature: args.parsed("temperature")?.unwrap_or(d.temperature),
        top_k: args.parsed("top-k")?.unwrap_or(d.top_k),
        top_p: args.parsed("top-p")?.unwrap_or(d.top_p),
        min_p: args.parsed("min-p")?.unwrap_or(d.min_p),
        repeat_penalty: args.parsed("repeat-penalty")?.unwrap_or(d.repeat_penalty),
        frequency_penalty: args.parsed("frequency-penalty")?.unwrap_or(d.frequency_penalty),
        presence_penalty: args.parsed("presence-penalty")?.unwrap_or(d.presence_penalty),
        penalty_last_n: args.parsed("repeat-last-n")?.unwrap_or(d.penalty_last_n),
        seed: args.parsed("seed")?.unwrap_or(d.seed),
    };
    p.validate()?;
    Ok(p)
}

/// `--backend cpu|gpu|auto`: the engine on the chosen backend. `auto` tries the GPU and falls
/// back to the CPU with the reason on stderr.
pub enum AnyEngine {
    Cpu(Engine<CpuBackend>),
    Gpu(Engine<GpuBackend>, String),
}

fn cpu_engine(args: &Args, bytes: Arc<Vec<u8>>) -> Result<Engine<CpuBackend>, CliError> {
    let backend = match args.parsed::<usize>("threads")? {
        Some(n) => CpuBackend::with_threads(n),
        None => CpuBackend::new(),
    };
    Ok(Engine::load(backend, bytes, args.parsed("ctx")?)?)
}

fn gpu_engine(bytes: Arc<Vec<u8>>, n_ctx: Option<usize>) -> Result<Engine<GpuBackend>, Error> {
    let backend = GpuBackend::new_blocking(&GpuOptions::default())?;
    Engine::load(backend, bytes, n_ctx)
}

pub fn load_any_engine(args: &Args) -> Result<AnyEngine, CliError> {
    let bytes = Arc::new(crate::read_model(args)?);
    let n_ctx = args.parsed("ctx")?;
    match args.get("backend").unwrap_or("cpu") {
        "cpu" => Ok(AnyEngine::Cpu(cpu_engine(args, bytes)?)),
        "gpu" => {
            let e = gpu_engine(bytes, n_ctx)?;
            let d = e.backend.ctx.describe();
            Ok(AnyEngine::Gpu(e, d))
        }
        "auto" => match gpu_engine(bytes.clone(), n_ctx) {
            Ok(e) => {
                let d = e.backend.ctx.describe();
                Ok(AnyEngine::Gpu(e, d))
            }
            Err(err) => {
                eprintln!("[backend auto: GPU unavailable ({err}); using the CPU]");
                Ok(AnyEngine::Cpu(cpu_engine(args, bytes)?))
            }
        },
        other => Err(CliError::Engine(Error::invalid_argument(format!("--backend {other}: expected cpu, gpu or auto")))),
    }
}

pub fn run(args: &Args) -> CliResult {
    match load_any_engine(args)? {
        AnyEngine::Cpu(e) => run_on(args, e, "cpu", None),
        AnyEngine::Gpu(e, d) => run_on(args, e, "gpu", Some(d)),
    }
}

fn run_on<B: Backend>(args: &Args, mut engine: Engine<B>, backend: &str, device: Option<String>) -> CliResult {
    let prompt = args.required("prompt")?.to_string();
    let opts = GenerateOptions {
        max_tokens: args.parsed("max-tokens")?.unwrap_or(128),
        sampling: sampling_from_args(args)?,
        stop: args.get("stop").map(|s| vec![s.replace("\\n", "\n")]).unwrap_or_default(),
        ignore_eos: args.flag("ignore-eos"),
    };
    let json = args.flag("json");
    let mut out = std::io::stdout().lock();
    let ids = engine.tokenize(&prompt);
    let mut g = engine.begin(&ids, &opts)?;
    // Work counters from the first generated token on: decode only, prefill excluded.
    let mut decode_start: Option<BackendStats> = None;
    while let Some(step) = browser_llm::block_on(engine.step(&mut g))? {
        let text = match step {
            Step::Prefill { .. } => continue,
            Step::Token { text, .. } => {
                decode_start.get_or_insert(engine.backend.stats());
                text
            }
            Step::Flush { text } => text,
        };
        if !json {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
    let r = g.into_generation();
    let end = engine.backend.stats();
    let start = decode_start.unwrap_or(end);
    let per_token = |v: u64| if r.timings.decode_tokens > 0 { v as f64 / r.timings.decode_tokens as f64 } else { 0.0 };
    let dispatches = per_token(end.dispatches - start.dispatches);
    let submits = per_token(end.submits - start.submits);
    if json {
        let line = serde_json::json!({
            "prompt_ids": r.prompt_ids,
            "ids": r.ids,
            "text": r.text,
            "finish_reason": r.finish_reason.as_str(),
            "backend": backend,
            "device": device,
            "dispatches_per_token": dispatches,
            "submits_per_token": submits,
            "timings": {
                "prefill_tokens": r.timings.prefill_tokens,
                "prefill_tokens_per_s": r.timings.prefill_tokens_per_s(),
                "decode_tokens": r.timings.decode_tokens,
                "decode_tokens_per_s": r.timings.decode_tokens_per_s(),
            },
        });
        writeln!(out, "{line}").ok();
    } else {
        writeln!(out).ok();
        let gpu = match &device {
            Some(d) => format!("; {dispatches:.0} dispatches and {submits:.1} submits per token on {d}"),
            None => String::new(),
        };
        eprintln!(
            "[{} prompt tokens, {:.1} tok/s prefill; {} tokens, {:.1} tok/s decode; finish: {}{gpu}]",
            r.timings.prefill_tokens,
            r.timings.prefill_tokens_per_s(),
            r.ids.len(),
            r.timings.decode_tokens_per_s(),
            r.finish_reason.as_str()
        );
    }
    Ok(())
}
