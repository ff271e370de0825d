//! `contract()`: the facts the JS layer and its type declarations must agree with, taken from
//! the Rust definitions they come from: error codes ([`ErrorCode::ALL`]), progress phases
//! ([`crate::storage::PHASES`]), backend names ([`BackendChoice::NAMES`]) and default options
//! ([`GenerateOptions::default`]; chat completions default to OpenAI's temperature of 1 instead,
//! see [`CHAT_TEMPERATURE`]). `tests/js/node.test.mjs` checks `src/js/errors.js`, `src/js/chat.js`
//! and `src/js/index.d.ts` against it.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::convert::{to_js, JsResult};
use crate::engine::GenerateOptions;
use crate::error::ErrorCode;
use crate::load::BackendChoice;

/// `chat.completions.create` default temperature: OpenAI's, so code written for its API samples
/// the same way. Every other default is `generate`'s.
pub const CHAT_TEMPERATURE: f32 = 1.0;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Contract {
    error_codes: Vec<&'static str>,
    progress_phases: [&'static str; 3],
    backends: [&'static str; 3],
    generate_defaults: Defaults,
    chat_defaults: ChatDefaults,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Defaults {
    max_tokens: usize,
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    repetition_penalty: f32,
    frequency_penalty: f32,
    presence_penalty: f32,
    penalty_last_n: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChatDefaults {
    temperature: f32,
}

#[wasm_bindgen]
pub fn contract() -> JsResult<JsValue> {
    let g = GenerateOptions::default();
    let s = &g.sampling;
    to_js(&Contract {
        error_codes: ErrorCode::ALL.iter().map(|c| c.as_str()).collect(),
        progress_phases: crate::storage::PHASES,
        backends: BackendChoice::NAMES,
        generate_defaults: Defaults {
            max_tokens: g.max_tokens,
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            min_p: s.min_p,
            repetition_penalty: s.repeat_penalty,
            frequency_penalty: s.frequency_penalty,
            presence_penalty: s.presence_penalty,
            penalty_last_n: s.penalty_last_n,
        },
        chat_defaults: ChatDefaults { temperature: CHAT_TEMPERATURE },
    })
}
