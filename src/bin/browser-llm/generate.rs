//! `browser-llm generate --model PATH --prompt TEXT --max-tokens N [sampling flags] [--json]`.
//!
//! Streams text to stdout as it is generated; with `--json` prints one line instead:
//! `{"prompt_ids":[...],"ids":[...],"text":"...","finish_reason":"...","timings":{...}}`.

use std::io::Write;
use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::engine::{Engine, GenerateOptions};
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

pub fn load_engine(args: &Args) -> Result<Engine<CpuBackend>, CliError> {
    match args.get("backend").unwrap_or("cpu") {
        "cpu" => {}
        other => {
            return Err(CliError::Engine(Error::invalid_argument(format!(
                "--backend {other}: only 'cpu' is available in this build"
            ))))
        }
    }
    let bytes = Arc::new(crate::read_model(args)?);
    let backend = match args.parsed::<usize>("threads")? {
        Some(n) => CpuBackend::with_threads(n),
        None => CpuBackend::new(),
    };
    Ok(Engine::load(backend, bytes, args.parsed("ctx")?)?)
}

pub fn run(args: &Args) -> CliResult {
    let prompt = args.required("prompt")?.to_string();
    let opts = GenerateOptions {
        max_tokens: args.parsed("max-tokens")?.unwrap_or(128),
        sampling: sampling_from_args(args)?,
        stop: args.get("stop").map(|s| vec![s.replace("\\n", "\n")]).unwrap_or_default(),
        ignore_eos: args.flag("ignore-eos"),
    };
    let json = args.flag("json");
    let mut engine = load_engine(args)?;
    let mut out = std::io::stdout().lock();
    let r = browser_llm::block_on(engine.generate(&prompt, &opts, &mut |_, text| {
        if !json {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        true
    }))?;
    if json {
        let line = serde_json::json!({
            "prompt_ids": r.prompt_ids,
            "ids": r.ids,
            "text": r.text,
            "finish_reason": r.finish_reason.as_str(),
            "backend": "cpu",
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
        eprintln!(
            "[{} prompt tokens, {:.1} tok/s prefill; {} tokens, {:.1} tok/s decode; finish: {}]",
            r.timings.prefill_tokens,
            r.timings.prefill_tokens_per_s(),
            r.ids.len(),
            r.timings.decode_tokens_per_s(),
            r.finish_reason.as_str()
        );
    }
    Ok(())
}
