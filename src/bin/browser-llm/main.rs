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
//! Flags are declared in `args.rs` (clap); `browser-llm --help` and `browser-llm COMMAND --help`
//! list them with their defaults. Errors print `error[CODE]: message` on stderr and exit with
//! status 1; usage errors (an unknown flag, a malformed value) print the usage and exit with 2.

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod generate;
#[cfg(not(target_arch = "wasm32"))]
mod inspect;
#[cfg(not(target_arch = "wasm32"))]
mod synth;
#[cfg(not(target_arch = "wasm32"))]
mod tokenize;

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

#[cfg(not(target_arch = "wasm32"))]
use browser_llm::Error;
#[cfg(not(target_arch = "wasm32"))]
use clap::{CommandFactory, Parser};

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let cli = args::Cli::parse();
    let result = match &cli.command {
        args::Command::Inspect(a) => inspect::run(a),
        args::Command::Tokenize(a) => tokenize::run(a),
        args::Command::Generate(a) => generate::run(a),
        args::Command::Synth(a) => synth::run(a),
    };
    if let Err(e) = result {
        match e {
            CliError::Usage(m) => {
                let mut cmd = args::Cli::command();
                cmd.error(clap::error::ErrorKind::ValueValidation, m).exit()
            }
            CliError::Engine(e) => {
                eprintln!("error[{}]: {}", e.code, e.message);
                std::process::exit(1);
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub enum CliError {
    /// A flag's value is wrong in a way clap cannot see (a shape's layer count, a schema that is
    /// not JSON): exit status 2 with the usage, as clap's own errors.
    Usage(String),
    Engine(Error),
}

#[cfg(not(target_arch = "wasm32"))]
impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Engine(e)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub type CliResult = Result<(), CliError>;

#[cfg(not(target_arch = "wasm32"))]
/// Read a whole model file, mapping I/O failures to a typed error.
pub fn read_model(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| {
        CliError::Engine(Error::invalid_argument(format!("cannot read model file '{}': {e}", path.display())))
    })
}

/// The CLI is native only (its flag parser is a native dependency); wasm32 builds of the
/// integration tests compile every binary target, so there it is empty.
#[cfg(target_arch = "wasm32")]
fn main() {}
