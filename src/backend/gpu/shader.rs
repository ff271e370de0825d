//! WGSL sources, the preprocessor that specializes them, and the key a compiled pipeline is
//! cached under.
//!
//! Shaders live in `shaders/` at the crate root, one `.wgsl` per op (same name as the op's Rust
//! function) plus `shaders/common/` helpers (one decode helper per weight format, registered
//! from the format table in `quant/types.rs`). They are
//! embedded with `include_str!` and specialized at run time by a tiny preprocessor:
//! - `#define NAME [value]`, `#ifdef NAME`, `#ifndef NAME`, `#else`, `#endif`;
//! - `#include "path"` (relative to `shaders/`; each file is included at most once per module), or
//!   `#include NAME` with the path as the value of the define `NAME` (`common/dequant.wgsl`
//!   includes the weight format's helper this way, `W_HELPER` in the key);
//! - every defined name that has a value is substituted where it appears as a whole word.
//!
//! A [`ShaderKey`] (shader, entry point, defines) names one variant; every specialization
//! parameter (quant type, workgroup size, tile width, head size, flags) is a define, so it is part
//! of the key and of the pipeline cache's key.

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, Result};

macro_rules! src {
    ($path:literal) => {
        ($path, include_str!(concat!("../../../shaders/", $path)))
    };
}

macro_rules! sources {
    ($($t:ident = $id:literal { block: $bs:literal, bytes: $bytes:literal, repr: $repr:ty,
        dot: $dot:ident, view: $view:ident, dequantize: $deq:ident, vec_dot: $vd:ident,
        quantize: $q:tt, wgsl: $wgsl:literal, dot_blk: $blk:literal }),* $(,)?) => {
        /// Every shader file, by its path under `shaders/`: the ops and the shared helpers, then
        /// each weight format's decode helper (the `wgsl` column of the format table).
        pub const SOURCES: &[(&str, &str)] = &[
            src!("add_norm.wgsl"),
            src!("argmax.wgsl"),
            src!("attention.wgsl"),
            src!("get_rows.wgsl"),
            src!("glu.wgsl"),
            src!("linear.wgsl"),
            src!("qk_prep.wgsl"),
            src!("quantize_q8.wgsl"),
            src!("rms_norm.wgsl"),
            src!("rope_shift.wgsl"),
            src!("softcap.wgsl"),
            src!("split_cols.wgsl"),
            src!("top_k.wgsl"),
            src!("common/act.wgsl"),
            src!("common/bytes.wgsl"),
            src!("common/dequant.wgsl"),
            src!("common/f16.wgsl"),
            src!("common/grid.wgsl"),
            src!("common/k_scale_min.wgsl"),
            src!("common/kv_q8.wgsl"),
            src!("common/math.wgsl"),
            src!("common/q8.wgsl"),
            src!("common/rope.wgsl"),
            $(src!($wgsl),)*
        ];
    };
}
crate::quant::ggml_types!(sources);

pub(super) fn source(path: &str) -> Result<&'static str> {
    SOURCES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, s)| *s)
        .ok_or_else(|| Error::internal(format!("no shader '{path}'")))
}

/// One shader variant: a file, an entry point and its defines (sorted, so equal sets compare equal).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShaderKey {
    pub shader: &'static str,
    pub entry: &'static str,
    pub defines: BTreeMap<String, String>,
}

impl ShaderKey {
    pub fn new(shader: &'static str, entry: &'static str) -> Self {
        ShaderKey { shader, entry, defines: BTreeMap::new() }
    }
    /// A define with a value (substituted as a whole word).
    pub fn def(mut self, name: &str, value: impl ToString) -> Self {
        self.defines.insert(name.to_string(), value.to_string());
        self
    }
    /// A flag (for `#ifdef` only).
    pub fn flag(mut self, name: &str) -> Self {
        self.defines.insert(name.to_string(), String::new());
        self
    }
    pub fn flag_if(self, on: bool, name: &str) -> Self {
        if on {
            self.flag(name)
        } else {
            self
        }
    }
    /// The specialized WGSL text.
    pub fn wgsl(&self) -> Result<String> {
        preprocess(&format!("{}.wgsl", self.shader), &self.defines)
    }
}

/// Expand `#include`s and `#ifdef`s of `path`, then substitute valued defines.
pub fn preprocess(path: &str, defines: &BTreeMap<String, String>) -> Result<String> {
    let mut defs = defines.clone();
    let mut out = String::new();
    let mut seen = HashSet::new();
    expand(path, &mut defs, &mut seen, &mut out, 0)?;
    Ok(substitute(&out, &defs))
}

fn expand(path: &str, defs: &mut BTreeMap<String, String>, seen: &mut HashSet<String>, out: &mut String, depth: usize) -> Result<()> {
    if depth > 16 {
        return Err(Error::internal(format!("shader include depth exceeded at '{path}'")));
    }
    if !seen.insert(path.to_string()) {
        return Ok(());
    }
    let text = source(path)?;
    // Stack of (this branch active, some branch of this #if already taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &[(bool, bool)]| stack.iter().all(|(a, _)| *a);
    for (ln, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let bad = |what: &str| Error::internal(format!("{path}:{}: {what}", ln + 1));
        if let Some(rest) = t.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            let dir = words.next().unwrap_or("");
            let arg = words.next();
            match dir {
                "ifdef" | "ifndef" => {
                    let name = arg.ok_or_else(|| bad("#ifdef without a name"))?;
                    let cond = defs.contains_key(name) == (dir == "ifdef");
                    stack.push((cond, cond));
                }
                "else" => {
                    let top = stack.last_mut().ok_or_else(|| bad("#else without #ifdef"))?;
                    *top = (!top.1, true);
                }
                "endif" => {
                    stack.pop().ok_or_else(|| bad("#endif without #ifdef"))?;
                }
                "define" if active(&stack) => {
                    let name = arg.ok_or_else(|| bad("#define without a name"))?;
                    let value: Vec<&str> = words.collect();
                    defs.insert(name.to_string(), value.join(" "));
                }
                "include" if active(&stack) => {
                    let arg = arg.ok_or_else(|| bad("#include without a path"))?;
                    let inc = match arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
                        Some(path) => path.to_string(),
                        None => match defs.get(arg) {
                            Some(path) if !path.is_empty() => path.clone(),
                            _ => return Err(bad(&format!("#include {arg}: no define {arg} with a path"))),
                        },
                    };
                    expand(&inc, defs, seen, out, depth + 1)?;
                }
                "define" | "include" => {}
                _ => return Err(bad(&format!("unknown directive #{dir}"))),
            }
            continue;
        }
        if active(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(Error::internal(format!("{path}: unterminated #ifdef")));
    }
    Ok(())
}

/// Replace whole-word occurrences of valued defines.
fn substitute(text: &str, defs: &BTreeMap<String, String>) -> String {
    let valued: BTreeMap<&str, &str> =
        defs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if valued.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(valued.get(word.as_str()).copied().unwrap_or(word));
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifdef_else_include_once_and_substitution() {
        let defs: BTreeMap<String, String> =
            [("W_HELPER".to_string(), "common/q8_0.wgsl".to_string()), ("W_QUANT".to_string(), String::new()), ("WG".to_string(), "64".to_string())]
                .into_iter()
                .collect();
        let s = preprocess("linear.wgsl", &defs).unwrap();
        assert!(s.contains("@workgroup_size(64)"), "WG substituted");
        assert!(s.contains("* 34u"), "the Q8_0 helper is included");
        assert!(!s.contains("* 144u"), "other formats are not");
        assert!(!s.contains("bias[p.row_off"), "BIAS is off");
        assert_eq!(s.matches("fn ld_u8").count(), 1, "bytes.wgsl included once");
        // Substitution is by whole word: WG_X stays.
        let mut d2 = BTreeMap::new();
        d2.insert("WG".to_string(), "8".to_string());
        assert_eq!(substitute("WG WG_X aWG (WG)", &d2), "8 WG_X aWG (8)");
        // An include by a define needs the define.
        let mut d3 = defs.clone();
        d3.remove("W_HELPER");
        assert!(preprocess("linear.wgsl", &d3).is_err());
    }
}
