//! Quantization against external references.
//!
//! Oracles:
//! - dequantization vs gguf-py's `gguf.quants.dequantize`: random blocks of every type (committed
//!   fixtures from tests/ref/quant_fixtures.py) and real tensors of the real model (gguf-py run at
//!   test time by tests/ref/quant_dequant.py). Tolerance: none, bit-exact (both compute the same
//!   f32 products in the same order; f16 -> f32 is exact).
//! - activation quantization vs llama.cpp's own `quantize_row_q8_{0,1,K}_ref` (fixtures from its
//!   libggml-base): byte-identical.
//! - quantized matvec on real weights vs the f64 dot of the dequantized rows, within the budget
//!   of `quant::random::ACT_ERROR` (the one tolerance table).

mod common;

use std::path::PathBuf;
use std::process::Command;

use browser_llm::gguf::Gguf;
use browser_llm::quant::random::{dot_error_bound, Rng};
use browser_llm::quant::{dequantize_row, matvec, quantize_acts, GgmlType};

fn fixture(name: &str) -> Vec<u8> {
    let p = common::repo_root().join("tests/ref/quant").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (regenerate with tests/ref/quant_fixtures.py)", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).collect();
    if let Some(&i) = bad.first() {
        panic!("{what}: {} of {} values differ; first at index {i}: ours {:e} vs reference {:e}",
            bad.len(), got.len(), got[i], want[i]);
    }
}

#[test]
fn dequantize_random_blocks_matches_gguf_py() {
    for ty in GgmlType::ALL {
        let blocks = fixture(&format!("{ty}.blocks"));
        let want = f32s(&fixture(&format!("{ty}.f32")));
        let mut got = vec![0.0f32; want.len()];
        dequantize_row(ty, &blocks, &mut got).unwrap();
        assert_bits_eq(&format!("{ty} random blocks"), &got, &want);
    }
}

#[test]
fn activation_quantization_matches_llama_cpp() {
    let acts = f32s(&fixture("acts.f32"));
    let rows: Vec<&[f32]> = acts.chunks_exact(512).collect();
    for (weight, file) in [(GgmlType::Q8_0, "acts.q8_0.bytes"), (GgmlType::Q4_1, "acts.q8_1.bytes"),
        (GgmlType::Q4_K, "acts.q8_K.bytes")]
    {
        let want = fixture(file);
        let per_row = want.len() / rows.len();
        for (r, x) in rows.iter().enumerate() {
            let q = quantize_acts(weight, x);
            let got = q.as_bytes();
            let exp = &want[r * per_row..(r + 1) * per_row];
            if let Some(i) = (0..got.len()).find(|&i| got[i] != exp[i]) {
                let bs = q.ty().type_size();
                panic!("{} row {r}: byte {i} (block {}, offset {}): ours {} vs llama.cpp {}",
                    q.ty(), i / bs, i % bs, got[i], exp[i]);
            }
        }
    }
}

/// The real model's tensors checked here: one or more of every type it has.
/// (name, rows to take; 0 = all)
const REAL: &[(&str, usize)] = &[
    ("blk.0.attn_norm.weight", 0),    // F32
    ("token_embd.weight", 96),        // Q8_0 (262144 rows: a slice)
    ("blk.0.attn_v.weight", 0),       // Q8_0
    ("blk.0.attn_q.weight", 0),       // Q5_0
    ("blk.0.attn_output.weight", 0),  // Q4_K
    ("blk.0.ffn_down.weight", 0),     // Q6_K
];

struct Slice<'a> {
    name: &'static str,
    ty: GgmlType,
    n_rows: usize,
    n_cols: usize,
    bytes: &'a [u8],
}

fn real_slices(file: &[u8]) -> Vec<Slice<'_>> {
    let g = Gguf::from_bytes(file).expect("parse the real model");
    REAL.iter()
        .map(|&(name, take)| {
            let t = g.tensor(name).unwrap_or_else(|| panic!("tensor {name} in the real model"));
            let data = g.tensor_data(file, t).unwrap();
            let n_cols = t.dims[0] as usize;
            let all_rows = data.len() / t.ty.row_bytes(n_cols).unwrap();
            let n_rows = if take == 0 { all_rows } else { take.min(all_rows) };
            let bytes = &data[..n_rows * t.ty.row_bytes(n_cols).unwrap()];
            Slice { name, ty: t.ty, n_rows, n_cols, bytes }
        })
        .collect()
}

#[test]
fn real_model_has_the_expected_types() {
    let slices = real_slices(common::model_bytes());
    let mut types: Vec<GgmlType> = slices.iter().map(|s| s.ty).collect();
    types.dedup();
    assert_eq!(types, [GgmlType::F32, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K]);
}

#[test]
fn dequantize_real_tensors_matches_gguf_py() {
    let slices = real_slices(common::model_bytes());
    let dir = tempdir("quant_ref");
    let mut cmd = Command::new(common::python());
    cmd.arg(common::repo_root().join("tests/ref/quant_dequant.py"));
    for (i, s) in slices.iter().enumerate() {
        let src = dir.join(format!("{i}.in"));
        std::fs::write(&src, s.bytes).unwrap();
        cmd.arg(s.ty.name()).arg(&src).arg(dir.join(format!("{i}.out")));
    }
    let out = cmd.output().expect("run tests/ref/quant_dequant.py");
    assert!(out.status.success(), "gguf-py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    for (i, s) in slices.iter().enumerate() {
        let want = f32s(&std::fs::read(dir.join(format!("{i}.out"))).unwrap());
        let mut got = vec![0.0f32; s.n_rows * s.n_cols];
        let rb = s.ty.row_bytes(s.n_cols).unwrap();
        for r in 0..s.n_rows {
            dequantize_row(s.ty, &s.bytes[r * rb..(r + 1) * rb], &mut got[r * s.n_cols..(r + 1) * s.n_cols]).unwrap();
        }
        assert_bits_eq(&format!("{} ({}, {} x {})", s.name, s.ty, s.n_rows, s.n_cols), &got, &want);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn matvec_real_tensors_within_error_budget() {
    let mut rng = Rng::new(0x600d);
    for s in real_slices(common::model_bytes()) {
        let x = rng.acts(s.n_cols, 1.0);
        let mut out = vec![0.0f32; s.n_rows];
        matvec(s.ty, s.bytes, s.n_rows, s.n_cols, &quantize_acts(s.ty, &x), &mut out).unwrap();
        let rb = s.ty.row_bytes(s.n_cols).unwrap();
        let mut w = vec![0.0f32; s.n_cols];
        for r in 0..s.n_rows {
            let row = &s.bytes[r * rb..(r + 1) * rb];
            dequantize_row(s.ty, row, &mut w).unwrap();
            let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let bound = dot_error_bound(s.ty, row, &w, &x);
            let diff = (out[r] as f64 - exact).abs();
            assert!(diff <= bound, "{} ({}) row {r}: matvec {:e} vs exact {exact:e}, |diff| {diff:e} > budget {bound:e}",
                s.name, s.ty, out[r]);
        }
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("browser-llm-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
