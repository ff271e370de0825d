//! Constrained decoding: output that must match a JSON schema, a grammar or a regex.
//!
//! llguidance (the library llama.cpp and vLLM use) compiles the constraint into a parser over the
//! model's vocabulary and gives, before each token, the set of tokens that keep the output valid
//! (the mask); [`Constraint::mask`] turns it into `-inf` logits, so greedy and sampled decoding
//! both pick only allowed tokens, and the generation ends when the grammar is complete.
//!
//! - [`Vocab`]: the vocabulary as llguidance sees it (each token's bytes; control tokens are
//!   marked special, so no grammar ever produces one), built once per engine on first use.
//! - [`ConstraintSpec`]: what the caller asked for (JSON object, JSON schema, Lark or GBNF
//!   grammar, regex), compiled by [`Constraint::new`] with llguidance's limits on grammar size
//!   and per-token work, so a hostile schema is an error, not a hang.

use std::sync::Arc;

use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::toktrie::{self, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// What the output must match.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintSpec {
    /// Any JSON object (OpenAI `response_format: {type: "json_object"}`).
    JsonObject,
    /// JSON valid under this schema (OpenAI `json_schema`).
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark syntax, or in llama.cpp's GBNF (`root ::= ...`).
    Grammar(String),
    /// A regular expression the whole output matches.
    Regex(String),
}

impl ConstraintSpec {
    fn grammar(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            ConstraintSpec::JsonObject => TopLevelGrammar::from_json_schema(json_with_whitespace(serde_json::json!({ "type": "object" }))),
            ConstraintSpec::JsonSchema(s) => {
                if !s.is_object() {
                    return Err(Error::invalid_argument("a JSON schema must be an object"));
                }
                TopLevelGrammar::from_json_schema(json_with_whitespace(s.clone()))
            }
            ConstraintSpec::Grammar(g) => TopLevelGrammar::from_lark(if is_gbnf(g) { gbnf_to_lark(g) } else { g.clone() }),
            ConstraintSpec::Regex(r) => TopLevelGrammar::from_regex(r),
        })
    }
}

/// JSON between whose tokens at most a space, or one or two newlines and an indent, may come
/// (llama.cpp's rule): unbounded whitespace lets a small model ramble in blanks forever. A
/// schema's own `x-guidance` options win.
fn json_with_whitespace(mut schema: serde_json::Value) -> serde_json::Value {
    if schema.get("x-guidance").is_none() {
        let opts = llguidance::JsonCompileOptions { whitespace_pattern: Some(r" |\n{1,2}[ \t]{0,20}".into()), ..Default::default() };
        opts.apply_to(&mut schema);
    }
    schema
}

/// GBNF rules are `name ::= ...`; Lark rules are `name: ...`.
fn is_gbnf(g: &str) -> bool {
    g.lines().any(|l| l.split_once("::=").is_some_and(|(name, _)| is_rule_name(name.trim())))
}

fn is_rule_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// llama.cpp's GBNF in llguidance's Lark dialect, which already has GBNF's literals, character
/// classes and `{m,n}` repeats: `name ::=` becomes `name:` (dashes in names become underscores,
/// `root` becomes `start`) and `#` comments become `//` comments. Rule names are rewritten
/// outside quotes and character classes only.
fn gbnf_to_lark(g: &str) -> String {
    let mut out = String::with_capacity(g.len() + 16);
    let mut chars = g.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if !word.is_empty() {
            let w = if word == "root" { "start".to_string() } else { word.replace('-', "_") };
            out.push_str(&w);
            word.clear();
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                flush(&mut word, &mut out);
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == '"' {
                        break;
                    }
                }
            }
            '[' => {
                // A character class: a regex in Lark (where `[x]` means "optional").
                flush(&mut word, &mut out);
                out.push_str("/[");
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            out.push(d);
                            if let Some(e) = chars.next() {
                                out.push(e);
                            }
                        }
                        '/' => out.push_str("\\/"),
                        ']' => {
                            out.push_str("]/");
                            break;
                        }
                        d => out.push(d),
                    }
                }
            }
            '.' => {
                flush(&mut word, &mut out);
                out.push_str("/(?s:.)/");
            }
            '#' => {
                flush(&mut word, &mut out);
                out.push_str("//");
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                    out.push(d);
                }
            }
            ':' if chars.peek() == Some(&':') => {
                flush(&mut word, &mut out);
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                }
                out.push(':');
            }
            c if c.is_ascii_alphanumeric() || c == '_' || (c == '-' && !word.is_empty()) => word.push(c),
            c => {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The model's vocabulary for llguidance.
pub struct Vocab {
    factory: ParserFactory,
    /// End-of-generation ids the model may end with once the grammar accepts.
    eog: Vec<u32>,
}

struct Env {
    trie: TokTrie,
    tok: Arc<Tokenizer>,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<toktrie::TokenId> {
        self.tok.encode(&String::from_utf8_lossy(s), false, false)
    }
}

impl Vocab {
    pub fn new(tok: Arc<Tokenizer>) -> Result<Vocab> {
        let n = u32::try_from(tok.n_vocab()).map_err(|_| Error::invalid_argument("vocabulary too large"))?;
        let eos = tok.eos_id().or(tok.eot_id()).or_else(|| tok.eog_ids().first().copied()).ok_or_else(|| {
            Error::unsupported_model("constrained output needs an end-of-generation token, and this model has none")
        })?;
        let words: Vec<Vec<u8>> = (0..n)
            .map(|id| {
                if tok.is_control(id) || tok.is_eog(id) {
                    // Special: the marker byte keeps grammars from ever matching it as text.
                    let mut w = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    w.extend_from_slice(tok.token_text(id).unwrap_or_default().as_bytes());
                    w
                } else {
                    tok.token_bytes(id)
                }
            })
            .collect();
        let mut info = TokRxInfo::new(n, eos);
        info.tok_bos = tok.bos_id();
        let trie = TokTrie::from(&info, &words);
        let eog = tok.eog_ids().to_vec();
        let env: TokEnv = Arc::new(Env { trie, tok });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::internal(format!("llguidance: {e}")))?;
        factory.quiet();
        *factory.limits_mut() = ParserLimits { max_grammar_size: 200_000, ..ParserLimits::default() };
        Ok(Vocab { factory, eog })
    }
}

/// A constraint being applied to one generation.
pub struct Constraint {
    matcher: Matcher,
    eog: Vec<u32>,
    tok_eos: u32,
}

impl Constraint {
    /// Compile `spec` for `vocab`. A bad schema or grammar is `INVALID_ARGUMENT` with
    /// llguidance's message.
    pub fn new(vocab: &Vocab, spec: &ConstraintSpec) -> Result<Constraint> {
        let grammar = spec.grammar()?;
        let parser = vocab.factory.create_parser(grammar);
        let matcher = Matcher::new(parser);
        if let Some(e) = matcher.get_error() {
            return Err(Error::invalid_argument(format!("the output constraint does not compile: {e}")));
        }
        let tok_eos = vocab.factory.tok_env().tok_trie().eos_token();
        Ok(Constraint { matcher, eog: vocab.eog.clone(), tok_eos })
    }

    /// Set the logits of tokens the constraint forbids now to `-inf`. End-of-generation tokens
    /// are allowed exactly when the output so far is complete.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let mask = self.matcher.compute_mask().map_err(|e| self.error(e))?;
        let eos_ok = mask.is_allowed(self.tok_eos);
        for (id, l) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let ok = if self.eog.contains(&id) { eos_ok } else { mask.is_allowed(id) };
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Whether `id` is an end-of-generation token (the output is then complete).
    pub fn is_end(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Advance past the sampled token `id` (not an end-of-generation token).
    pub fn commit(&mut self, id: u32) -> Result<()> {
        self.matcher.consume_token(id).map_err(|e| self.error(e))
    }

    /// The output is complete and nothing may follow it.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::invalid_argument(format!("the output constraint failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbnf_becomes_lark() {
        let g = "root ::= answer # the start\nanswer ::= \"yes\" | \"no-way\" | [a-z/-]{2,3} .\nmy-rule ::= \"::=\" [^\\]]";
        assert!(is_gbnf(g));
        assert_eq!(
            gbnf_to_lark(g),
            "start : answer // the start\nanswer : \"yes\" | \"no-way\" | /[a-z\\/-]/{2,3} /(?s:.)/\nmy_rule : \"::=\" /[^\\]]/"
        );
        assert!(!is_gbnf("start: \"a\" | b\nb: /[0-9]+/"));
    }
}
