//! The command line, declared with clap's derive API: every flag, its type and its default in
//! one place; an unknown or malformed flag is a usage error (exit status 2) with the usage, and
//! `--help` (on the tool or a command) lists every flag with its default.

use std::path::PathBuf;

use browser_llm::sampling::SamplingParams;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "browser-llm", version, about = "The native command-line tool of browser-llm, for tests and benchmarks (not part of the npm package).")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print a GGUF file's header, metadata and tensors.
    Inspect(ModelArg),
    /// Tokenize text: one JSON line {"ids": [...], "pieces": [...]}.
    Tokenize(TokenizeArgs),
    /// Generate text from a prompt (streamed; one JSON line with --json).
    Generate(Box<GenerateArgs>),
    /// Write a GGUF of a real model's shapes and formats with random weights (GPU benchmarks).
    Synth(SynthArgs),
}

#[derive(Args)]
pub struct ModelArg {
    /// The GGUF file.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
}

#[derive(Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// The text to tokenize.
    #[arg(long)]
    pub text: String,
    /// Add no BOS/EOS and parse no control tokens written in the text.
    #[arg(long)]
    pub no_special: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Cpu,
    Gpu,
    Auto,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    Software,
    Hardware,
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// The prompt (control tokens written in it are parsed, BOS added as the model asks).
    #[arg(long)]
    pub prompt: String,
    /// The most tokens to generate.
    #[arg(long, value_name = "N", default_value_t = browser_llm::engine::DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Stop when the text contains this string ("\n" for a newline).
    #[arg(long, value_name = "STR")]
    pub stop: Option<String>,
    /// The context length in tokens (default: the model's, bounded by memory).
    #[arg(long, value_name = "N")]
    pub ctx: Option<usize>,
    /// What the KV cache stores: f16 (llama.cpp's default) or q8_0 (llama.cpp's
    /// `--cache-type-k q8_0 --cache-type-v q8_0`, about half the memory).
    #[arg(long, value_name = "TYPE", default_value = "f16")]
    pub cache_type: String,
    /// CPU threads (default: the machine's cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Where the model runs; auto skips software GPU adapters and says why on stderr.
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    pub backend: BackendArg,
    /// Go on past the end-of-generation token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Turn prompt-lookup speculation off (on by default for greedy decoding: the same tokens,
    /// fewer passes where the text repeats itself).
    #[arg(long)]
    pub no_speculation: bool,
    /// Go on past a full context with llama.cpp's context shift (the oldest half of the tokens
    /// after BOS leave the cache).
    #[arg(long)]
    pub context_shift: bool,
    /// Print one JSON line (ids, text, timings; on the GPU the launch audit) instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// Constrain the output to this JSON schema (@FILE reads it from a file).
    #[arg(long, value_name = "SCHEMA|@FILE", group = "constraint")]
    pub json_schema: Option<String>,
    /// Constrain the output to this Lark or GBNF grammar (@FILE reads it from a file).
    #[arg(long, value_name = "GRAMMAR|@FILE", group = "constraint")]
    pub grammar: Option<String>,
    /// Constrain the output to this regular expression.
    #[arg(long, value_name = "RE", group = "constraint")]
    pub regex: Option<String>,
    /// Force the GPU kernels' layout (default: by adapter; for tests and benchmarks).
    #[arg(long, value_enum)]
    pub gpu_layout: Option<LayoutArg>,
    /// Run the GPU without subgroup operations (for tests and benchmarks).
    #[arg(long)]
    pub no_subgroups: bool,
}

/// The sampling flags; defaults are the library's (`SamplingParams::default()`).
#[derive(Args)]
pub struct SamplingArgs {
    /// 0 is greedy.
    #[arg(long, value_name = "T", default_value_t = SamplingParams::default().temperature)]
    pub temperature: f32,
    /// 0 keeps every token.
    #[arg(long, value_name = "K", default_value_t = SamplingParams::default().top_k)]
    pub top_k: usize,
    #[arg(long, value_name = "P", default_value_t = SamplingParams::default().top_p)]
    pub top_p: f32,
    #[arg(long, value_name = "M", default_value_t = SamplingParams::default().min_p)]
    pub min_p: f32,
    #[arg(long, value_name = "R", default_value_t = SamplingParams::default().repeat_penalty)]
    pub repeat_penalty: f32,
    #[arg(long, value_name = "F", default_value_t = SamplingParams::default().frequency_penalty)]
    pub frequency_penalty: f32,
    #[arg(long, value_name = "P", default_value_t = SamplingParams::default().presence_penalty)]
    pub presence_penalty: f32,
    /// How many of the last tokens the penalties look at.
    #[arg(long, value_name = "N", default_value_t = SamplingParams::default().penalty_last_n)]
    pub repeat_last_n: usize,
    #[arg(long, value_name = "S", default_value_t = SamplingParams::default().seed)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn params(&self) -> browser_llm::Result<SamplingParams> {
        let p = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            penalty_last_n: self.repeat_last_n,
            seed: self.seed,
        };
        p.validate()?;
        Ok(p)
    }
}

#[derive(Args)]
pub struct SynthArgs {
    /// The model shape.
    #[arg(long, value_parser = ["gemma3-270m", "qwen2-1.5b", "qwen2-7b"])]
    pub shape: String,
    /// Where to write the GGUF.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Layers to write (default: all of the shape's).
    #[arg(long, value_name = "N")]
    pub layers: Option<u32>,
    /// The random weights' seed.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}
