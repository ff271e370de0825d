//! `browser-llm generate --model PATH --prompt TEXT --max-tokens N [sampling flags] [--json]`.
//!
//! Streams text to stdout as it is generated; with `--json` prints one line instead:
//! `{"prompt_ids":[...],"ids":[...],"text":"...","finish_reason":"...","backend":"cpu|gpu",
//! "device":..., "kv_cache":"f16|q8_0", "kv_cache_bytes":..., "dispatches_per_token":..., "submits_per_token":..., "timings":{...}}`
//! (per-token counters are over decoded tokens after the first; zero on the CPU).
//! `--backend cpu|gpu|auto`.
//!
//! On the GPU the line also holds the launch audit: `gpu_layout`, `subgroups`,
//! `compute_passes_per_token`, `buffers_created_per_token`, `bind_groups_created_per_token` and
//! `pipelines_created_per_token` (in the last decoded token: the first tokens fill the bind-group
//! cache),
//! `pipelines_created_after_load` (0: the self-check and the first-tokens check at load compile
//! every pipeline the model uses) and
//! `dispatch_audit`, the last decoded token's dispatches: `{"op", "entry", "workgroups": [x, y,
//! z], "invocations", "rows"}` (rows: weight rows streamed, 0 for other ops).

use std::io::Write;
use std::sync::Arc;

use browser_llm::backend::gpu::{GpuLayout, GpuOptions};
use browser_llm::backend::BackendStats;
use browser_llm::constrain::ConstraintSpec;
use browser_llm::engine::{GenerateOptions, Step};
use browser_llm::gguf::Gguf;
use browser_llm::load::{load, AnyEngine, BackendChoice, LoadOptions};

use crate::args::{BackendArg, GenerateArgs, LayoutArg};
use crate::{CliError, CliResult};

/// `--backend cpu|gpu|auto` (default cpu): the library's one load path and backend policy
/// (`auto` skips software GPU adapters and says why on stderr).
fn load_any_engine(args: &GenerateArgs) -> Result<AnyEngine, CliError> {
    let bytes = Arc::new(crate::read_model(&args.model.model)?);
    let gguf = Gguf::from_bytes(&bytes)?;
    let opts = LoadOptions {
        backend: match args.backend {
            BackendArg::Cpu => BackendChoice::Cpu,
            BackendArg::Gpu => BackendChoice::Gpu,
            BackendArg::Auto => BackendChoice::Auto,
        },
        n_ctx: args.ctx,
        kv_type: browser_llm::backend::KvType::parse(&args.cache_type)?,
        cpu_threads: args.threads,
        gpu: GpuOptions {
            layout: args.gpu_layout.map(|l| match l {
                LayoutArg::Software => GpuLayout::Software,
                LayoutArg::Hardware => GpuLayout::Hardware,
            }),
            no_subgroups: args.no_subgroups,
            ..GpuOptions::default()
        },
    };
    let loaded = browser_llm::block_on(load(&gguf, &bytes, &opts))?;
    if opts.backend == BackendChoice::Auto {
        eprintln!("[backend auto: {}]", loaded.reason);
    }
    Ok(loaded.engine)
}

pub fn run(args: &GenerateArgs) -> CliResult {
    let engine = load_any_engine(args)?;
    let device = engine.device();
    run_on(args, engine, device)
}

fn run_on(args: &GenerateArgs, mut engine: AnyEngine, device: Option<String>) -> CliResult {
    let backend = engine.backend_name();
    let prompt = args.prompt.clone();
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: args.sampling.params()?,
        stop: args.stop.as_ref().map(|s| vec![s.replace("\\n", "\n")]).unwrap_or_default(),
        ignore_eos: args.ignore_eos,
        constraint: constraint_from_args(args)?,
        logprobs: None,
        speculation: (!args.no_speculation).then(Default::default),
        context_shift: args.context_shift,
    };
    let json = args.json;
    let mut out = std::io::stdout().lock();
    let ids = engine.tokenize(&prompt);
    let loaded = engine.stats();
    let mut g = engine.begin(&ids, &opts)?;
    // Work counters from the first generated token on: decode only, prefill excluded.
    let mut decode_start: Option<BackendStats> = None;
    // The counters when the last two tokens came: the last decoded token's work (steady state).
    let (mut before_last, mut at_last) = (engine.stats(), engine.stats());
    while let Some(step) = browser_llm::block_on(engine.step(&mut g))? {
        let text = match step {
            Step::Prefill { .. } => continue,
            Step::Token { text, .. } => {
                decode_start.get_or_insert(engine.stats());
                (before_last, at_last) = (at_last, engine.stats());
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
    let end = engine.stats();
    let start = decode_start.unwrap_or(end);
    let per_token = |v: u64| if r.timings.decode_tokens > 0 { v as f64 / r.timings.decode_tokens as f64 } else { 0.0 };
    let dispatches = per_token(end.dispatches - start.dispatches);
    let submits = per_token(end.submits - start.submits);
    if json {
        let audit = engine.gpu_audit().map(|(layout, subgroups, records)| {
            serde_json::json!({
                "gpu_layout": layout.name(),
                "subgroups": subgroups,
                "compute_passes_per_token": per_token(end.compute_passes - start.compute_passes),
                "buffers_created_per_token": at_last.buffers_created - before_last.buffers_created,
                "bind_groups_created_per_token": at_last.bind_groups_created - before_last.bind_groups_created,
                "pipelines_created_per_token": at_last.pipelines_created - before_last.pipelines_created,
                "pipelines_created_after_load": end.pipelines_created - loaded.pipelines_created,
                "dispatch_audit": records.iter().map(|d| serde_json::json!({
                    "op": d.op, "entry": d.entry, "workgroups": d.workgroups, "invocations": d.invocations, "rows": d.rows,
                })).collect::<Vec<_>>(),
            })
        });
        let line = serde_json::json!({
            "prompt_ids": r.prompt_ids,
            "ids": r.ids,
            "text": r.text,
            "finish_reason": r.finish_reason.as_str(),
            "backend": backend,
            "device": device,
            "kv_cache": engine.kv_shape().ty.name(),
            "kv_cache_bytes": engine.kv_shape().bytes(),
            "dispatches_per_token": dispatches,
            "submits_per_token": submits,
            "timings": {
                "prefill_tokens": r.timings.prefill_tokens,
                "prefill_tokens_per_s": r.timings.prefill_tokens_per_s(),
                "decode_tokens": r.timings.decode_tokens,
                "decode_tokens_per_s": r.timings.decode_tokens_per_s(),
            },
        });
        let mut line = line;
        if let (Some(serde_json::Value::Object(a)), Some(o)) = (audit, line.as_object_mut()) {
            o.extend(a);
        }
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

/// `--json-schema SCHEMA`, `--grammar GRAMMAR` (Lark or GBNF) or `--regex RE`; a value that
/// starts with `@` names a file to read it from.
fn constraint_from_args(args: &GenerateArgs) -> Result<Option<ConstraintSpec>, CliError> {
    let read = |v: &str| -> Result<String, CliError> {
        match v.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("cannot read {path}: {e}"))),
            None => Ok(v.to_string()),
        }
    };
    Ok(if let Some(s) = &args.json_schema {
        let schema = serde_json::from_str(&read(s)?).map_err(|e| CliError::Usage(format!("--json-schema is not JSON: {e}")))?;
        Some(ConstraintSpec::JsonSchema(schema))
    } else if let Some(g) = &args.grammar {
        Some(ConstraintSpec::Grammar(read(g)?))
    } else {
        args.regex.as_ref().map(|r| ConstraintSpec::Regex(r.to_string()))
    })
}
