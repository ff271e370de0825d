//! `browser-llm tokenize --model PATH --text TEXT [--no-special]`: one JSON line
//! `{"ids":[...],"pieces":[...]}`.
//!
//! By default BOS/EOS are added as the model asks and control tokens written in the text are parsed
//! (llama.cpp `llama_tokenize(add_special = true, parse_special = true)`); `--no-special` turns both off.
//! Pieces are `token_to_piece(id, special = true)`, with invalid UTF-8 (a lone byte-fallback byte) shown
//! as U+FFFD.

use browser_llm::gguf::Gguf;
use browser_llm::tokenizer::Tokenizer;

use crate::args::TokenizeArgs;
use crate::CliResult;

pub fn run(args: &TokenizeArgs) -> CliResult {
    let text = &args.text;
    let special = !args.no_special;
    let bytes = crate::read_model(&args.model.model)?;
    let gguf = Gguf::from_bytes(&bytes)?;
    let tok = Tokenizer::from_gguf(&gguf)?;
    let ids = tok.encode(text, special, special);
    let pieces: Vec<String> =
        ids.iter().map(|&id| String::from_utf8_lossy(&tok.token_to_piece(id, true)).into_owned()).collect();
    let line = serde_json::json!({ "ids": ids, "pieces": pieces });
    println!("{line}");
    Ok(())
}
