//! `browser-llm`: the native command-line tool for tests and benchmarks (not part of the npm package).
//!
//! ```text
//! browser-llm inspect  --model PATH
//! browser-llm tokenize --model PATH --text TEXT
//! browser-llm generate --model PATH --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]
//!                      [--top-p P] [--min-p M] [--repeat-penalty R] [--seed S] [--stop STR]
//!                      [--ctx N] [--threads N] [--backend cpu|gpu|auto] [--ignore-eos] [--json]
//!                      [--json-schema SCHEMA|@FILE | --grammar LARK_OR_GBNF|@FILE | --regex RE]
//!                      [--gpu-layout software|hardware] [--no-subgroups]
//! browser-llm synth    --shape gemma3-270m|qwen2-1.5b|qwen2-7b --out PATH [--layers N] [--seed S]
//! ```
//! Errors print `error[CODE]: message` on stderr and exit with status 1 (2 for usage errors).

mod args;
mod generate;
mod inspect;
mod synth;
mod tokenize;

use args::Args;
use browser_llm::Error;

const USAGE: &str = "usage:
  browser-llm inspect  --model PATH
  browser-llm tokenize --model PATH --text TEXT [--no-special]
  browser-llm generate --model PATH --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K]
                       [--top-p P] [--min-p M] [--repeat-penalty R] [--seed S] [--stop STR]
                       [--ctx N] [--threads N] [--backend cpu|gpu|auto] [--ignore-eos] [--json]
                       [--json-schema SCHEMA|@FILE | --grammar LARK_OR_GBNF|@FILE | --regex RE]
                       [--gpu-layout software|hardware] [--no-subgroups]
  browser-llm synth    --shape gemma3-270m|qwen2-1.5b|qwen2-7b --out PATH [--layers N] [--seed S]
  (synth: random weights in a real model's shapes and formats, for GPU benchmarks;
   --gpu-layout forces the GPU kernels' layout, default by adapter; --no-subgroups: without
   subgroup operations. Both for tests and benchmarks.)";

fn main() {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let args = match Args::parse(argv) {
        Ok(a) => a,
        Err(e) => usage_error(&e),
    };
    let result = match cmd.as_str() {
        "inspect" => inspect::run(&args),
        "tokenize" => tokenize::run(&args),
        "generate" => generate::run(&args),
        "synth" => synth::run(&args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => usage_error(&format!("unknown command '{other}'")),
    };
    if let Err(e) = result {
        match e {
            CliError::Usage(m) => usage_error(&m),
            CliError::Engine(e) => {
                eprintln!("error[{}]: {}", e.code, e.message);
                std::process::exit(1);
            }
        }
    }
}

fn usage_error(msg: &str) -> ! {
    eprintln!("browser-llm: {msg}\n{USAGE}");
    std::process::exit(2);
}

pub enum CliError {
    Usage(String),
    Engine(Error),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Engine(e)
    }
}

pub type CliResult = Result<(), CliError>;

/// Read a whole model file, mapping I/O failures to a typed error.
pub fn read_model(args: &Args) -> Result<Vec<u8>, CliError> {
    let path = args.required("model")?;
    std::fs::read(path).map_err(|e| {
        CliError::Engine(Error::invalid_argument(format!("cannot read model file '{path}': {e}")))
    })
}
