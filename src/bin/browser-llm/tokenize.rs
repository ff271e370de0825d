//! `browser-llm tokenize --model PATH --text TEXT`: one JSON line `{"ids":[...],"pieces":[...]}`.

use crate::args::Args;
use crate::CliResult;

pub fn run(args: &Args) -> CliResult {
    let _ = crate::read_model(args)?;
    todo!("tokenize")
}
