//! Unit tests of the quantization kernels. They run natively (`cargo test --lib quant`) and under
//! wasm with SIMD128 (`cargo test --target wasm32-unknown-unknown --lib quant`), where
//! `kernels::*` is the SIMD128 code and is compared with `scalar::*` explicitly.
//!
//! Layers, one oracle each: SIMD vs scalar (bit-exact for quantized formats); quantized dot vs
//! the f64 dot of the dequantized row, within the budget of `random::ACT_ERROR`; API checks.
//! (Dequantization vs gguf-py and the real model: tests/quant_ref.rs.)
#![allow(non_snake_case, clippy::needless_range_loop, clippy::assertions_on_constants)]

use super::random::{block_counts, dot_error_bound, random_row, Rng};
use super::*;
use crate::error::ErrorCode;

/// Random-case count for every property test (fixed, so runs are comparable).
const CASES: usize = 6;



// ---------------------------------------------------------------------------------------------
// SIMD vs scalar (on native both sides are the scalar kernels; the test still runs)

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn simd_quantize_q8_0_and_q8_1_match_scalar() {
    let mut rng = Rng::new(0x51);
    for case in 0..CASES * 4 {
        let nb = block_counts(GgmlType::Q8_0)[case % 4];
        let scale = [1.0, 1e-3, 300.0, 1e-6][case % 4];
        let mut x = rng.acts(nb * QK, scale);
        if case % 3 == 0 {
            // ties: with amax = 127, id = 1 and x * id lands exactly on .5
            x[0] = 127.0;
            for (i, v) in x.iter_mut().enumerate().skip(1).take(20) {
                *v = (i as f32 - 10.0) + 0.5;
            }
        }
        same_blocks::<BlockQ8_0>(&x, nb, kernels::quantize_row_q8_0, scalar::quantize_row_q8_0, &format!("case {case}, Q8_0"));
        // Q8_1: the same quants and scale, and the scaled sum of the quants.
        same_blocks::<BlockQ8_1>(&x, nb, kernels::quantize_row_q8_1, scalar::quantize_row_q8_1, &format!("case {case}, Q8_1"));
    }
}

/// `x` quantized into `nb` blocks by the SIMD and the scalar quantizer: equal block for block.
fn same_blocks<B: Clone + Default + PartialEq + std::fmt::Debug>(x: &[f32], nb: usize, simd: fn(&[f32], &mut [B]), reference: fn(&[f32], &mut [B]), what: &str) {
    let (mut a, mut b) = (vec![B::default(); nb], vec![B::default(); nb]);
    simd(x, &mut a);
    reference(x, &mut b);
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_eq!(a, b, "{what}, block {i}: simd vs scalar");
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn simd_quantize_q8_K_matches_scalar() {
    let mut rng = Rng::new(0x52);
    for case in 0..CASES * 4 {
        let nb = block_counts(GgmlType::Q8_K)[case % 4];
        let mut x = rng.acts(nb * QK_K, [1.0, 1e-4, 50.0, 1.0][case % 4]);
        match case % 4 {
            // ties: max = -127 gives iscale = 1, so halves round to even
            0 => {
                x[3] = -127.0;
                for (i, v) in x.iter_mut().enumerate().skip(4).take(40) {
                    *v = (i as f32 - 20.0) + 0.5;
                }
            }
            // equal magnitudes of both signs: the first one sets the sign of the scale
            1 => {
                x[7] = 2.0;
                x[9] = -2.0;
            }
            // an all-zero block
            3 => x[..QK_K].iter_mut().for_each(|v| *v = 0.0),
            _ => {}
        }
        let mut a = vec![BlockQ8K::default(); nb];
        let mut b = vec![BlockQ8K::default(); nb];
        kernels::quantize_row_q8_K(&x, &mut a);
        scalar::quantize_row_q8_K(&x, &mut b);
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert!(a.d.to_bits() == b.d.to_bits(), "case {case}, block {i}: d simd {} vs scalar {}", a.d, b.d);
            for j in 0..QK_K {
                assert_eq!(a.qs[j], b.qs[j], "case {case}, block {i}, qs[{j}]: simd vs scalar");
            }
            assert_eq!(a.bsums, b.bsums, "case {case}, block {i}: bsums simd vs scalar");
        }
    }
}

/// The SIMD128 F16 dot product equals the scalar one within f32 vs f64 accumulation (the
/// quantized formats' kernels: the packed tests below).
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn simd_vec_dot_f16_matches_scalar() {
    let mut rng = Rng::new(0x53);
    let ty = GgmlType::F16;
    for case in 0..CASES {
        let n = block_counts(ty)[case % 4] * ty.block_size();
        let w = as_u16s(&random_row(ty, n, &mut rng)).unwrap().into_owned();
        let x = rng.acts(n, 1.0);
        let mut y = vec![0u16; n];
        scalar::quantize_row_f16(&x, &mut y);
        let (simd, scal) = (kernels::vec_dot_f16(&w, &y), scalar::vec_dot_f16(&w, &y));
        let tol = 1e-6 * n as f32;
        assert!((simd - scal).abs() <= tol, "{ty} n={n} case {case}: simd {simd:e} vs scalar {scal:e}");
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn simd_dequantize_f16_matches_scalar() {
    // every f16 bit pattern: normals, subnormals, zeros, infinities, NaNs (compared as bits)
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let mut a = vec![0.0f32; all.len() - 3]; // odd length: exercises the scalar tail
    let mut b = a.clone();
    kernels::dequantize_row_f16(&all[..a.len()], &mut a);
    scalar::dequantize_row_f16(&all[..b.len()], &mut b);
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        // NaN payloads may differ (the scalar conversion quiets signalling NaNs)
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "f16 bits {i:#06x}: simd {:#010x} vs scalar {:#010x}", a.to_bits(), b.to_bits());
    }
}

/// Named fixed case: the one Q8_0 block whose quants are known by hand.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn quantize_q8_fixed_case() {
    let mut x = [0.0f32; QK];
    x[0] = 127.0; // d = 1, id = 1
    x[1] = 2.5; // roundf: 3 (half away from zero)
    x[2] = -2.5; // -3
    x[3] = 0.49999997; // 0
    x[4] = -126.5; // -127
    let mut y = [BlockQ8_0::default()];
    kernels::quantize_row_q8_0(&x, &mut y);
    assert_eq!(f16_to_f32(y[0].d), 1.0);
    assert_eq!(&y[0].qs[..5], &[127, 3, -3, 0, -127]);

    // Q8_K: max = -127 -> iscale = 1, nearest_int rounds half to even
    let mut x = [0.0f32; QK_K];
    x[0] = -127.0;
    x[1] = 2.5; // 2
    x[2] = 3.5; // 4
    x[3] = -0.5; // 0
    let mut y = [BlockQ8K::default()];
    kernels::quantize_row_q8_K(&x, &mut y);
    assert_eq!(y[0].d, 1.0); // 1 / iscale
    assert_eq!(&y[0].qs[..4], &[-127, 2, 4, 0]);
    assert_eq!(y[0].bsums[0], -127 + 2 + 4);
}

// ---------------------------------------------------------------------------------------------
// Quantized dot vs f64 dot of dequantized rows, within the format's budget

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn vec_dot_within_error_budget() {
    let mut rng = Rng::new(0x54);
    for ty in GgmlType::ALL {
        for case in 0..CASES {
            // float formats: 1..640 elements, also not a multiple of 4 or 8
            let n = block_counts(ty)[case % 4] * ty.block_size();
            let w = random_row(ty, n, &mut rng);
            let x = rng.acts(n, [1.0, 0.01, 30.0][case % 3]);
            let mut wf = vec![0.0f32; n];
            dequantize_row(ty, &w, &mut wf).unwrap();
            let exact: f64 = wf.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let got = vec_dot(ty, &w, &quantize_acts(ty, &x)).unwrap() as f64;
            let bound = dot_error_bound(ty, &w, &wf, &x);
            assert!(
                (got - exact).abs() <= bound,
                "{ty} n={n} case {case}: vec_dot {got:e} vs exact {exact:e}, |diff| {:e} > budget {bound:e}",
                (got - exact).abs()
            );
            // the budget is not vacuous: it is small next to the magnitude of the terms (outliers
            // of 8x the typical value make a block's step ~8/127 of a typical |x|)
            let abs: f64 = wf.iter().zip(&x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
            assert!(bound <= 0.1 * abs + 1e-30, "{ty}: budget {bound:e} too loose for sum|w x| {abs:e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// API: matvec / matmul / errors

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn matvec_and_matmul_agree_with_vec_dot() {
    let mut rng = Rng::new(0x55);
    for ty in GgmlType::ALL {
        let n_cols = 2 * if ty.block_size() == 1 { 48 } else { ty.block_size() };
        let n_rows = 5;
        let w: Vec<u8> = (0..n_rows).flat_map(|_| random_row(ty, n_cols, &mut rng)).collect();
        let xs: Vec<QuantizedActs> = (0..3).map(|_| quantize_acts(ty, &rng.acts(n_cols, 1.0))).collect();
        let mut out = vec![0.0f32; n_rows * xs.len()];
        matmul(ty, &w, n_rows, n_cols, &xs, &mut out).unwrap();
        let rb = ty.row_bytes(n_cols).unwrap();
        for (t, x) in xs.iter().enumerate() {
            let mut mv = vec![0.0f32; n_rows];
            matvec(ty, &w, n_rows, n_cols, x, &mut mv).unwrap();
            for r in 0..n_rows {
                let d = vec_dot(ty, &w[r * rb..(r + 1) * rb], x).unwrap();
                assert!(d.to_bits() == mv[r].to_bits(), "{ty} row {r}: vec_dot {d} vs matvec {}", mv[r]);
                assert!(d.to_bits() == out[t * n_rows + r].to_bits(), "{ty} row {r} vec {t}: matmul");
            }
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn unaligned_weights_give_the_same_result() {
    let mut rng = Rng::new(0x56);
    for ty in [GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F16, GgmlType::F32, GgmlType::Q8_K] {
        let n = 2 * ty.block_size().max(16);
        let w = random_row(ty, n, &mut rng);
        let mut shifted = vec![0u8; w.len() + 1];
        shifted[1..].copy_from_slice(&w);
        let x = quantize_acts(ty, &rng.acts(n, 1.0));
        let a = vec_dot(ty, &w, &x).unwrap();
        let b = vec_dot(ty, &shifted[1..], &x).unwrap();
        assert!(a.to_bits() == b.to_bits(), "{ty}: aligned {a} vs unaligned {b}");
        let (mut da, mut db) = (vec![0.0; n], vec![0.0; n]);
        dequantize_row(ty, &w, &mut da).unwrap();
        dequantize_row(ty, &shifted[1..], &mut db).unwrap();
        assert_eq!(da, db, "{ty}: dequantize aligned vs unaligned");
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn bad_lengths_are_errors_not_panics() {
    let bad = |r: Result<()>| assert_eq!(r.unwrap_err().code, ErrorCode::InvalidArgument);
    for ty in GgmlType::ALL {
        let n = 2 * ty.block_size();
        let bytes = vec![0u8; ty.row_bytes(n).unwrap()];
        let mut dst = vec![0.0f32; n];
        dequantize_row(ty, &bytes, &mut dst).unwrap();
        bad(dequantize_row(ty, &bytes[..bytes.len() - 1], &mut dst));
        bad(dequantize_row(ty, &bytes, &mut dst[..n - 1]));
        if ty.block_size() > 1 {
            bad(dequantize_row(ty, &bytes, &mut vec![0.0; n + 1]));
        }
        let x = quantize_acts(ty, &vec![1.0; n]);
        let mut out = vec![0.0f32; 2];
        bad(matvec(ty, &bytes, 2, n, &x, &mut out)); // 2 rows need twice the bytes
        bad(matvec(ty, &bytes, 1, n, &x, &mut out)); // out too long
        bad(matvec(ty, &bytes, 1, n + 1, &x, &mut out[..1])); // n_cols mismatch
        let other = if ty.vec_dot_type() == GgmlType::Q8_0 { GgmlType::Q4_K } else { GgmlType::Q8_0 };
        bad(matvec(ty, &bytes, 1, n, &quantize_acts(other, &vec![1.0; n]), &mut out[..1]));
        // acts of the wrong length (a partial block is padded, then rejected here)
        bad(matvec(ty, &bytes, 1, n, &quantize_acts(ty, &vec![1.0; n - 1]), &mut out[..1]));
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn vec_dot_types_follow_ggml() {
    use GgmlType::*;
    for (w, a) in [(Q4_0, Q8_0), (Q5_0, Q8_0), (Q8_0, Q8_0), (Q4_1, Q8_1), (Q5_1, Q8_1), (Q2_K, Q8_K),
        (Q3_K, Q8_K), (Q4_K, Q8_K), (Q5_K, Q8_K), (Q6_K, Q8_K), (F16, F16), (BF16, BF16), (F32, F32)]
    {
        assert_eq!(w.vec_dot_type(), a, "{w}");
        assert_eq!(quantize_acts(w, &[0.5; 256]).ty(), a, "{w}");
    }
    let q = quantize_acts(Q4_K, &[0.5; 256]);
    assert_eq!(q.as_bytes().len(), Q8_K.type_size());
}

/// Guard: the wasm test build must exercise the SIMD128 kernels, not the scalar fallback.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn simd128_is_active_on_wasm() {
    if cfg!(target_arch = "wasm32") {
        assert!(cfg!(target_feature = "simd128"), "wasm build without +simd128: SIMD kernels untested");
        let want = if cfg!(target_feature = "relaxed-simd") { "relaxed-simd" } else { "simd128" };
        assert_eq!(super::packed::KERNELS, want);
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn type_ids_round_trip_and_the_supported_list_names_every_type() {
    for ty in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(ty.id()).unwrap(), ty);
        assert_eq!(ggml_type_name(ty.id()), Some(ty.name()));
    }
    // IQ2_XXS: known to ggml, not decodable here.
    let err = GgmlType::from_id(16).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnsupportedQuant);
    for ty in GgmlType::ALL {
        assert!(err.message.contains(&format!(" {},", ty.name())) || err.message.ends_with(ty.name()), "{ty}: {}", err.message);
    }
    assert_eq!(GgmlType::from_id(99).unwrap_err().code, ErrorCode::BadGguf);
}

// ---------------------------------------------------------------------------------------------
// Repacked weights (quant::packed)

/// Run `f` under each form of the relaxed-SIMD kernels (once elsewhere): both forms with Q8_0
/// as this engine's dot product reads it, then with Q8_0's parts kernel (`f` packs its weights,
/// so that Q8_0 is stored for the kernel).
fn for_each_form(mut f: impl FnMut()) {
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    for (pairs, q8_parts) in [(false, false), (true, false), (false, true)] {
        use super::packed::relaxed;
        relaxed::force(pairs);
        relaxed::force_q8_parts(q8_parts);
        f();
        relaxed::force_q8_parts(false);
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
    f();
}

/// The largest sums the relaxed-SIMD kernels' 16-bit steps can meet: every quant at its format's
/// largest magnitude (Q4_0: -8, Q4_1: 15, both stored as nibbles; Q5_0: -16, Q5_1: 31, nibbles
/// and fifth bits; Q6_K: 31 after its
/// offset, the 6-bit stored value 63; Q8_0: -128, whose pair sums are the largest) against activations all +127 or all -127, every row; each form
/// equals `vec_dot` bit for bit (no lane overflowed).
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn packed_kernels_hold_the_largest_quants() {
    use super::packed::{PackedActs, PackedWeight};
    let one = 0x3C00u16.to_le_bytes(); // f16 1.0
    let cases = [
        (GgmlType::Q4_0, vec![0], 0x00), // every nibble 0: the quant -8
        (GgmlType::Q4_1, vec![0, 2], 0xFF),
        (GgmlType::Q5_0, vec![0], 0x00), // every nibble and fifth bit 0: the quant -16
        (GgmlType::Q5_1, vec![0, 2], 0xFF),
        (GgmlType::Q6_K, vec![208], 0xFF),
        (GgmlType::Q8_0, vec![0], 0x80),
    ];
    for (ty, scale_at, fill) in cases {
        let (bs, bb) = (ty.block_size(), ty.type_size());
        let n_cols = 2 * 256;
        let mut block = vec![fill; bb];
        for &at in &scale_at {
            block[at..at + 2].copy_from_slice(&one);
        }
        let rows = 8;
        let bytes: Vec<u8> = block.iter().copied().cycle().take(bb * n_cols / bs * rows).collect();
        for sign in [1.0f32, -1.0] {
            let acts: Vec<QuantizedActs> = (0..13).map(|_| quantize_acts(ty, &vec![sign; n_cols])).collect();
            let want = vec_dot(ty, &bytes[..bb * n_cols / bs], &acts[0]).unwrap();
            assert!(want.abs() > 4000.0, "{ty}: {want}");
            for_each_form(|| {
                // Packed under each form: Q8_0's parts are built only for the parts kernel.
                let packed: Vec<PackedActs> = acts.iter().map(|a| PackedActs::new(a).unwrap()).collect();
                let w = PackedWeight::new(ty, &bytes, rows, n_cols).unwrap();
                let mut got = vec![0.0f32; 13 * rows];
                w.matmul_band(&packed, 0, rows, &mut got).unwrap();
                assert!(got.iter().all(|g| g.to_bits() == want.to_bits()), "{ty} {sign}: {got:?} vs {want}");
            });
        }
    }
}

/// A Q8_0 weight whose quants all happen to lie in -32..=31 (a small or hostile file) still runs
/// the kernel of its format (in the relaxed-SIMD build the offset formats' relaxed kernels are
/// not Q8_0's; such a weight once reached them and failed their offset assertion) and equals
/// `vec_dot`.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn packed_q8_0_with_small_quants() {
    use super::packed::{PackedActs, PackedWeight};
    let ty = GgmlType::Q8_0;
    let mut block = 0x3C00u16.to_le_bytes().to_vec(); // f16 1.0
    block.extend((0..32).map(|i| ((i % 7) as i8 - 3) as u8));
    let (rows, n_cols) = (5, 64);
    let bytes: Vec<u8> = block.iter().copied().cycle().take(block.len() * 2 * rows).collect();
    let w = PackedWeight::new(ty, &bytes, rows, n_cols).unwrap();
    assert!(w.fits_relaxed());
    let acts = quantize_acts(ty, &Rng::new(0x5c).acts(n_cols, 1.0));
    let want = vec_dot(ty, &bytes[..2 * block.len()], &acts).unwrap();
    let mut got = vec![0.0f32; rows];
    w.matmul_band(&[PackedActs::new(&acts).unwrap()], 0, rows, &mut got).unwrap();
    assert!(got.iter().all(|g| g.to_bits() == want.to_bits()), "{got:?} vs {want}");
}

/// Every packable format (the 32-element ones and the K-quants), row counts that do and do not
/// fill the last 4-row group, 1, 3, 5, 13 and 21 tokens (whole tiles of 4 and of 8 and tokens
/// left; up to 16 tokens over 10 groups: runs of 2 groups read together and 2 groups left, see
/// `packed::STREAMS`, 21 one group at a time), whole and partial bands (several groups in one
/// kernel call): the packed product equals
/// the scalar `vec_dot` of each GGUF
/// row bit for bit (Q4_0: within 2 ulp-scale, its reference multiplies the two scales one after
/// the other), the vector kernel equals the packed scalar reference bit for bit, and dequantized
/// rows equal the GGUF dequantization exactly.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn packed_matmul_matches_scalar_vec_dot() {
    use super::packed::{PackedActs, PackedWeight, ROWS};
    let mut rng = Rng::new(0x5a);
    use GgmlType::*;
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
        for (case, &n_rows) in [1usize, 4, 7, 9, 13, 37].iter().enumerate() {
            let n_cols = block_counts(ty)[case % 4] * ty.block_size();
            let rows: Vec<Vec<u8>> = (0..n_rows).map(|_| random_row(ty, n_cols, &mut rng)).collect();
            let w = PackedWeight::new(ty, &rows.concat(), n_rows, n_cols).unwrap();
            // Every format but Q8_0 has 6-bit quants (the relaxed-SIMD kernels' operand).
            assert!(ty == Q8_0 || w.fits_relaxed(), "{ty}: quants outside -32..=31");
            for n_tok in [1, 3, 5, 13, 21] {
                let acts: Vec<QuantizedActs> =
                    (0..n_tok).map(|_| quantize_acts(ty, &rng.acts(n_cols, 1.0))).collect();
                let packed: Vec<PackedActs> = acts.iter().map(|a| PackedActs::new(a).unwrap()).collect();
                // The whole weight, a band that starts at the second group and one that ends
                // inside the last group.
                let bands = [(0, n_rows), (ROWS, n_rows.saturating_sub(ROWS)), (0, n_rows - 1)];
                for (r0, n) in bands.into_iter().filter(|&(r0, n)| r0 < n_rows && n > 0) {
                    let mut reference = vec![0.0f32; n_tok * n];
                    w.matmul_band_reference(&packed, r0, n, &mut reference).unwrap();
                    for_each_form(|| {
                        let packed: Vec<PackedActs> = acts.iter().map(|a| PackedActs::new(a).unwrap()).collect();
                        let w = PackedWeight::new(ty, &rows.concat(), n_rows, n_cols).unwrap();
                        let mut got = vec![0.0f32; n_tok * n];
                        w.matmul_band(&packed, r0, n, &mut got).unwrap();
                        for t in 0..n_tok {
                            for i in 0..n {
                                let (g, re) = (got[t * n + i], reference[t * n + i]);
                                assert_eq!(g.to_bits(), re.to_bits(), "{ty} {n_rows}x{n_cols} r0={r0} t={t} row {i}: vector {g:e} vs reference {re:e}");
                                let want = vec_dot(ty, &rows[r0 + i], &acts[t]).unwrap();
                                if ty == GgmlType::Q4_0 {
                                    let tol = 1e-6 * (1.0 + want.abs());
                                    assert!((g - want).abs() <= tol, "{ty} {n_rows}x{n_cols} row {}: {g:e} vs vec_dot {want:e}", r0 + i);
                                } else {
                                    assert_eq!(g.to_bits(), want.to_bits(), "{ty} {n_rows}x{n_cols} row {}: {g:e} vs vec_dot {want:e}", r0 + i);
                                }
                            }
                        }
                    });
                }
            }
            for (r, raw) in rows.iter().enumerate() {
                let (mut a, mut b) = (vec![0.0f32; n_cols], vec![0.0f32; n_cols]);
                w.dequantize_row(r, &mut a).unwrap();
                dequantize_row(ty, raw, &mut b).unwrap();
                assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{ty} row {r} dequantized differently");
            }
        }
    }
}

/// Bad shapes are typed errors: a byte count that does not match, an unpackable format, a band
/// that does not start on a group, activations of another width.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn packed_bad_shapes_are_errors() {
    use super::packed::{PackedActs, PackedWeight};
    let mut rng = Rng::new(0x5b);
    let row = random_row(GgmlType::Q8_0, 64, &mut rng);
    assert!(PackedWeight::new(GgmlType::Q8_0, &row, 2, 64).is_err());
    assert!(PackedWeight::new(GgmlType::F16, &row, 1, 17).is_err());
    assert!(PackedWeight::new(GgmlType::Q4_K, &row, 1, 64).is_err());
    let w = PackedWeight::new(GgmlType::Q8_0, &[row.clone(), row].concat(), 2, 64).unwrap();
    let a = PackedActs::new(&quantize_acts(GgmlType::Q8_0, &rng.acts(64, 1.0))).unwrap();
    let mut out = [0.0f32; 2];
    assert!(w.matmul_band(std::slice::from_ref(&a), 1, 1, &mut out[..1]).is_err());
    assert!(w.matmul_band(std::slice::from_ref(&a), 0, 3, &mut out).is_err());
    let short = PackedActs::new(&quantize_acts(GgmlType::Q8_0, &rng.acts(32, 1.0))).unwrap();
    assert!(w.matmul_band(&[short], 0, 2, &mut out).is_err());
    let mut row_out = [0.0f32; 64];
    assert!(w.dequantize_row(2, &mut row_out).is_err());
}

/// The packed kernels' vector f16 -> f32 conversion of scales equals the scalar one for every
/// one of the 65536 bit patterns (subnormals, infinities and NaNs included).
#[cfg(any(all(target_arch = "wasm32", target_feature = "simd128"), target_arch = "x86_64"))]
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn packed_f16_scales_convert_exactly() {
    for base in (0..=u16::MAX).step_by(4) {
        let h = [base, base + 1, base + 2, base + 3];
        let got = super::packed::arch::f16x4_to_f32_array(h);
        for (x, g) in h.iter().zip(got) {
            assert_eq!(g.to_bits(), f16_to_f32(*x).to_bits(), "f16 bits {x:#06x}");
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn non_finite_activations_give_nan_products_not_finite_garbage() {
    let mut rng = Rng::new(41);
    for ty in GgmlType::ALL {
        let n_cols = 256;
        let w = random_row(ty, n_cols, &mut rng);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x: Vec<f32> = (0..n_cols).map(|i| (i as f32 * 0.37).sin()).collect();
            x[100] = bad;
            let acts = super::quantize_acts(ty, &x);
            let mut out = [0.0f32];
            super::matvec(ty, &w, 1, n_cols, &acts, &mut out).unwrap();
            assert!(!out[0].is_finite(), "{ty}: {bad} in the activations gave {}", out[0]);
        }
    }
}

/// The load's kernel warm-up runs every packable format (and skips the others) without error.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn kernel_warm_up_runs_every_format() {
    use GgmlType::*;
    packed::warm_up(&[Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, F32, F16, Q8_0]).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The exponential of softmax

/// `scalar::exp_f32` is within 1 ulp of the exact exponential over the whole range it computes
/// (every 97th f32 from e^-87.3 to e^88, both signs of zero), 0 below it, and keeps NaN.
#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn exp_f32_is_within_1_ulp_of_the_exact_exponential() {
    use scalar::exp_consts::{HI, LO};
    let ulp = |x: f32| f32::from_bits(x.to_bits() + 1) - x;
    let mut worst = 0.0f64;
    let mut check = |x: f32| {
        let (got, want) = (scalar::exp_f32(x), (x as f64).exp());
        let err = (got as f64 - want).abs() / ulp(want as f32) as f64;
        worst = worst.max(err);
        assert!(err <= 1.0, "exp({x:e}) = {got:e}, exactly {want:e}: {err:.2} ulp");
    };
    for bits in (0..=(-LO).to_bits()).step_by(97) {
        check(-f32::from_bits(bits));
        if f32::from_bits(bits) <= HI {
            check(f32::from_bits(bits));
        }
    }
    check(LO);
    check(HI);
    assert!(worst > 0.0, "a sweep that measured nothing");
    assert_eq!(scalar::exp_f32(-87.5), 0.0);
    assert_eq!(scalar::exp_f32(f32::NEG_INFINITY), 0.0);
    assert!(scalar::exp_f32(f32::NAN).is_nan());
    assert_eq!(scalar::exp_f32(1e6), scalar::exp_f32(HI));
}
