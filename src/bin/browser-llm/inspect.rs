//! `browser-llm inspect --model PATH`: metadata and tensor table.

use crate::args::Args;
use crate::CliResult;

pub fn run(args: &Args) -> CliResult {
    let _ = crate::read_model(args)?;
    todo!("inspect")
}
