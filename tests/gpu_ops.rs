//! Every GPU op against the CPU reference (`backend::cpu`) on seeded random inputs of awkward
//! shapes (odd sizes, one row, sizes not a multiple of the workgroup or of the prefill tile),
//! by normalized mean squared error, sum((gpu - cpu)^2) / sum(cpu^2), against [`TOL`].
//!
//! Natively the GPU is Mesa lavapipe (Vulkan). Without any adapter these tests print a message
//! and pass, unless `BROWSER_LLM_REQUIRE_GPU=1` (CI), where they fail.
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;

use browser_llm::backend::cpu::CpuBackend;
use browser_llm::backend::gpu::{ops, GpuBackend, GpuLayout, GpuOptions};
use browser_llm::selfcheck;
use browser_llm::backend::{AttnParams, Backend, KvType, QkPrep, RopeParams, TensorBytes};
use browser_llm::gguf::TensorInfo;
use browser_llm::model::{Activation, Arch, ModelConfig, RopeStyle};
use browser_llm::quant::random::{dot_error_bound, random_row, Rng};
use browser_llm::quant::{self, GgmlType};

/// The tolerances (NMSE) are the GPU self-check's table (`selfcheck::TOLERANCE`, with why each
/// value), so the test suite and the check a user's GPU runs agree.
fn tol(name: &str) -> f64 {
    selfcheck::tolerance(name)
}

fn gpu_with(opts: &GpuOptions) -> Option<GpuBackend> {
    match GpuBackend::new_blocking(opts) {
        Ok(g) => Some(g),
        Err(e) if std::env::var_os("BROWSER_LLM_REQUIRE_GPU").is_some() => panic!("no GPU adapter, but BROWSER_LLM_REQUIRE_GPU is set: {e}"),
        Err(e) => {
            eprintln!("skipping: {e} (set BROWSER_LLM_REQUIRE_GPU=1 to fail instead)");
            None
        }
    }
}

fn gpu() -> Option<GpuBackend> {
    gpu_with(&GpuOptions::default())
}

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    if den > 0.0 { num / den } else { num }
}

/// NMSE of `got` against `want`; on failure prints the worst index and both values.
fn check(what: &str, tol_name: &str, got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (mut num, mut den, mut worst) = (0f64, 0f64, (0usize, 0f64));
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w as f64).powi(2);
        num += d;
        den += (w as f64).powi(2);
        if d > worst.1 || !g.is_finite() {
            worst = (i, d);
        }
    }
    let nmse = if den > 0.0 { num / den } else { num };
    let t = tol(tol_name);
    assert!(
        nmse <= t && got.iter().all(|v| v.is_finite()),
        "{what}: NMSE {nmse:.3e} > {t:.1e}; worst at {}: gpu {} cpu {}",
        worst.0,
        got[worst.0],
        want[worst.0]
    );
    eprintln!("{what}: NMSE {nmse:.2e} (tolerance {t:.0e})");
    nmse
}

fn tensor(ty: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> (TensorInfo, TensorBytes) {
    let n = bytes.len();
    let info = TensorInfo { name: "t".into(), dims: vec![cols as u64, rows as u64], ty, offset: 0, n_bytes: n as u64 };
    (info, TensorBytes::new(Arc::new(bytes), 0..n))
}

fn random_weight(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> (TensorInfo, TensorBytes) {
    let bytes: Vec<u8> = (0..rows).flat_map(|_| random_row(ty, cols, rng)).collect();
    tensor(ty, rows, cols, bytes)
}

fn f32_weight(v: &[f32]) -> (TensorInfo, TensorBytes) {
    tensor(GgmlType::F32, 1, v.len(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

struct Pair {
    cpu: CpuBackend,
    gpu: GpuBackend,
}

impl Pair {
    fn new() -> Option<Pair> {
        Self::with(&GpuOptions::default())
    }
    fn with(opts: &GpuOptions) -> Option<Pair> {
        Some(Pair { cpu: CpuBackend::with_threads(1), gpu: gpu_with(opts)? })
    }
    fn weights(&mut self, t: &(TensorInfo, TensorBytes)) -> (<CpuBackend as Backend>::Weight, <GpuBackend as Backend>::Weight) {
        (self.cpu.weight(&t.0, t.1.clone()).unwrap(), self.gpu.weight(&t.0, t.1.clone()).unwrap())
    }
    fn acts(&mut self, data: &[f32], rows: usize, cols: usize) -> (<CpuBackend as Backend>::Act, <GpuBackend as Backend>::Act) {
        let mut c = browser_llm::backend::cpu::CpuAct::new(rows, cols);
        c.data.copy_from_slice(data);
        (c, self.gpu.upload_act(data, rows, cols).unwrap())
    }
}

/// The decode products' kernel layouts to test: per row (software), cooperative (hardware) with
/// subgroups where the adapter has them, and cooperative without. Each test of a product runs
/// in all of them on the same adapter.
fn layouts() -> Vec<GpuOptions> {
    let hw = |no_subgroups| GpuOptions { layout: Some(GpuLayout::Hardware), no_subgroups, ..Default::default() };
    vec![GpuOptions { layout: Some(GpuLayout::Software), ..Default::default() }, hw(false), hw(true)]
}

/// `what` with the layout in it, for messages.
fn in_layout(p: &Pair, what: &str) -> String {
    format!("{what} [{} layout{}]", p.gpu.ctx.layout.name(), if p.gpu.ctx.subgroups { ", subgroups" } else { "" })
}

/// Every weight type of the format table (`GgmlType::ALL`), the real model's first.
fn types() -> Vec<GgmlType> {
    let first = [GgmlType::F32, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K];
    first.into_iter().chain(GgmlType::ALL.into_iter().filter(|t| !first.contains(t))).collect()
}

#[test]
fn linear_every_type_awkward_shapes() {
    for opts in layouts() {
        let Some(mut p) = Pair::with(&opts) else { return };
        let mut rng = Rng::new(7);
        for ty in types() {
            let bs = ty.block_size();
            let float = bs == 1;
            // (weight rows, columns, tokens): one row; rows not a multiple of the workgroup (64);
            // token counts around the prefill tile (8).
            let shapes: Vec<(usize, usize, usize)> = if float {
                vec![(1, 7, 1), (67, 13, 1), (130, 64, 5), (65, 33, 9)]
            } else {
                vec![(1, bs, 1), (67, 3 * bs, 1), (130, 2 * bs, 5), (65, bs, 9)]
            };
            for (rows, cols, toks) in shapes {
                let t = random_weight(ty, rows, cols, &mut rng);
                let (cw, gw) = p.weights(&t);
                let x = rng.acts(toks * cols, 1.0);
                let (cx, gx) = p.acts(&x, toks, cols);
                let want = p.cpu.linear(&cx, &cw, None).unwrap();
                let gy = p.gpu.linear(&gx, &gw, None).unwrap();
                let got = browser_llm::block_on(p.gpu.read(&gy)).unwrap();
                let what = in_layout(&p, &format!("linear {ty} {rows}x{cols} x {toks} tokens"));
                // Against the exact f32 product of the dequantized weights.
                let mut wf = vec![0f32; rows * cols];
                for r in 0..rows {
                    let rb = ty.row_bytes(cols).unwrap();
                    quant::dequantize_row(ty, &t.1.as_slice()[r * rb..(r + 1) * rb], &mut wf[r * cols..(r + 1) * cols]).unwrap();
                }
                let exact: Vec<f32> = (0..toks)
                    .flat_map(|tk| {
                        let (x, wf) = (&x, &wf);
                        (0..rows).map(move |r| (0..cols).map(|c| wf[r * cols + c] as f64 * x[tk * cols + c] as f64).sum::<f64>() as f32)
                    })
                    .collect();
                // Decode of Q8_0 quantizes the activations on the GPU as the CPU does (XQ8).
                let q8 = toks == 1 && cols % 32 == 0 && browser_llm::backend::gpu::ops::has_dot_q8(ty);
                if q8 {
                    check(&what, "linear_q8acts", &got, &want.data);
                    let rb = ty.row_bytes(cols).unwrap();
                    for r in 0..rows {
                        let bound = dot_error_bound(ty, &t.1.as_slice()[r * rb..(r + 1) * rb], &wf[r * cols..(r + 1) * cols], &x);
                        let (g, e) = (got[r] as f64, exact[r] as f64);
                        assert!((g - e).abs() <= bound + 1e-6 * e.abs(), "{what}: row {r}: gpu {g} exact {e} (budget {bound:.3e})");
                    }
                    continue;
                }
                check(&what, "linear_f32ref", &got, &exact);
                // Against the CPU op: it quantizes activations (Q8_0 / Q8_K, as llama.cpp), the GPU
                // does not, so each output may differ by the format's activation error budget
                // (`quant::random::dot_error_bound`, the quantized-dot row of the tolerance table).
                let rb = ty.row_bytes(cols).unwrap();
                for tk in 0..toks {
                    for r in 0..rows {
                        let bound = dot_error_bound(ty, &t.1.as_slice()[r * rb..(r + 1) * rb], &wf[r * cols..(r + 1) * cols], &x[tk * cols..(tk + 1) * cols]);
                        let (g, c) = (got[tk * rows + r] as f64, want.data[tk * rows + r] as f64);
                        assert!((g - c).abs() <= bound + 1e-6 * c.abs(), "{what}: token {tk} row {r}: gpu {g} cpu {c} (budget {bound:.3e})");
                    }
                }
                let e = nmse(&got, &want.data);
                eprintln!("{what}: NMSE vs CPU {e:.2e}");
            }
        }
    }
}

#[test]
fn quantize_q8_matches_the_cpu_quantize_acts() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(5);
    for (rows, cols, scale) in [(1, 32, 1.0), (1, 640, 3.0), (3, 96, 0.01), (1, 64, 0.0)] {
        let mut x = rng.acts(rows * cols, scale);
        if rows * cols > 40 {
            x[5] = 0.5 * x[7]; // values near a rounding boundary are covered by the random ones
        }
        let (_, gx) = p.acts(&x, rows, cols);
        let gq = browser_llm::backend::gpu::ops::quantize_q8(&mut p.gpu, &gx).unwrap();
        let words: Vec<u32> = browser_llm::block_on(p.gpu.read(&gq)).unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(words.len(), rows * cols / 32 * 9);
        let (mut got, mut want) = (Vec::new(), Vec::new());
        for r in 0..rows {
            let cpu = quant::quantize_acts(GgmlType::Q8_0, &x[r * cols..(r + 1) * cols]);
            let cb = cpu.as_bytes();
            for blk in 0..cols / 32 {
                let w = &words[(r * cols / 32 + blk) * 9..][..9];
                let c = &cb[blk * 34..][..34];
                let cd = quant::f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
                let gd = f32::from_bits(w[0]);
                assert_eq!(gd, cd, "rows {rows} cols {cols}: block {blk} scale");
                for j in 0..32 {
                    let gq = (w[1 + j / 4] >> (8 * (j % 4))) as u8 as i8;
                    let cq = c[2 + j] as i8;
                    assert!((gq as i32 - cq as i32).abs() <= 1, "block {blk} quant {j}: gpu {gq} cpu {cq}");
                    got.push(gd * gq as f32);
                    want.push(cd * cq as f32);
                }
            }
        }
        check(&format!("quantize_q8 {rows}x{cols} (scale {scale})"), "quantize_q8", &got, &want);
    }
}

/// Issue 25: a NaN or an infinity in an activation block gives the block a NaN scale (as the CPU's
/// `quantize_acts`), so the product it feeds is NaN instead of finite garbage; the other blocks
/// are quantized as before. Before, `max` dropped the NaN and the value was quantized to an
/// integer.
#[test]
fn quantize_q8_propagates_nan_and_inf_as_a_nan_scale() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(9);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let cols = 128;
        let mut x = rng.acts(cols, 1.0);
        x[40] = bad; // block 1
        let (cx, gx) = p.acts(&x, 1, cols);
        let gq = browser_llm::backend::gpu::ops::quantize_q8(&mut p.gpu, &gx).unwrap();
        let words: Vec<u32> = browser_llm::block_on(p.gpu.read(&gq)).unwrap().iter().map(|v| v.to_bits()).collect();
        let scales: Vec<f32> = (0..cols / 32).map(|b| f32::from_bits(words[b * 9])).collect();
        assert!(scales[1].is_nan(), "{bad}: block 1's scale is {}", scales[1]);
        assert!(scales.iter().enumerate().all(|(b, s)| b == 1 || s.is_finite()), "{bad}: {scales:?}");
        // And through a decode product on Q8 activations: NaN where the CPU's is NaN.
        let mut wrng = Rng::new(3);
        let w = random_weight(GgmlType::Q8_0, 8, cols, &mut wrng);
        let (cw, gw) = (p.cpu.weight(&w.0, w.1.clone()).unwrap(), p.gpu.weight(&w.0, w.1.clone()).unwrap());
        let want = p.cpu.linear(&cx, &cw, None).unwrap().data;
        let gy = p.gpu.linear(&gx, &gw, None).unwrap();
        let got = browser_llm::block_on(p.gpu.read(&gy)).unwrap();
        assert!(want.iter().all(|v| v.is_nan()), "{bad}: CPU {want:?}");
        assert!(got.iter().all(|v| v.is_nan()), "{bad}: GPU {got:?}");
    }
}

#[test]
fn linear_with_bias_and_weights_split_by_rows() {
    // A 16 KiB binding cap splits a 1000-row Q8_0 weight (68 bytes a row) into 5 buffers.
    for opts in layouts() {
        let Some(capped) = gpu_with(&GpuOptions { max_binding_bytes: Some(16 << 10), ..opts.clone() }) else { return };
        linear_split_by_rows_case(Pair { cpu: CpuBackend::with_threads(1), gpu: capped }, &opts);
    }
}

fn linear_split_by_rows_case(mut p: Pair, opts: &GpuOptions) {
    let mut rng = Rng::new(11);
    let t = random_weight(GgmlType::Q8_0, 1000, 64, &mut rng);
    let (cw, gw) = p.weights(&t);
    assert_eq!(gw.parts.len(), 5, "row parts");
    let bias = f32_weight(&rng.acts(1000, 1.0));
    let (_, gb) = p.weights(&bias);
    let x = rng.acts(3 * 64, 1.0);
    let (_, gx) = p.acts(&x, 3, 64);
    // Against the unsplit product on the same GPU (no binding cap).
    let mut whole = gpu_with(opts).unwrap();
    let (ww, wb) = (whole.weight(&t.0, t.1.clone()).unwrap(), whole.weight(&bias.0, bias.1.clone()).unwrap());
    let wx = whole.upload_act(&x, 3, 64).unwrap();
    let want = whole.linear(&wx, &ww, Some(&wb)).unwrap();
    let want = browser_llm::block_on(whole.read(&want)).unwrap();
    let got = p.gpu.linear(&gx, &gw, Some(&gb)).unwrap();
    check("linear split + bias", "linear_split", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want);
    // Decode (one row, Q8 activations, quantized once for all parts) split + bias vs unsplit.
    let (gx1, wx1) = (p.gpu.upload_act(&x[..64], 1, 64).unwrap(), whole.upload_act(&x[..64], 1, 64).unwrap());
    let want = whole.linear(&wx1, &ww, Some(&wb)).unwrap();
    let want = browser_llm::block_on(whole.read(&want)).unwrap();
    let got = p.gpu.linear(&gx1, &gw, Some(&gb)).unwrap();
    check("linear decode split + bias", "linear_split", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want);
    // A product split into q/k/v outputs across the row parts (boundaries inside parts).
    for rows in [1, 3] {
        let (gxr, wxr) = (p.gpu.upload_act(&x[..rows * 64], rows, 64).unwrap(), whole.upload_act(&x[..rows * 64], rows, 64).unwrap());
        let want = whole.linear(&wxr, &ww, None).unwrap();
        let want = browser_llm::block_on(whole.read(&want)).unwrap();
        let got = p.gpu.linear_split(&gxr, &gw, &[333, 400, 267]).unwrap();
        let mut joined = vec![0.0; rows * 1000];
        for (i, (o, off)) in got.iter().zip([0, 333, 733]).enumerate() {
            let piece = browser_llm::block_on(p.gpu.read(o)).unwrap();
            let width = [333, 400, 267][i];
            for r in 0..rows {
                joined[r * 1000 + off..r * 1000 + off + width].copy_from_slice(&piece[r * width..(r + 1) * width]);
            }
        }
        check(&format!("linear_split across parts, {rows} rows"), "linear_split", &joined, &want);
    }
    // Embedding lookup across parts, scaled.
    let ids = [999u32, 0, 250, 251, 500, 3];
    let want = p.cpu.get_rows(&cw, &ids, 1.5).unwrap();
    let got = p.gpu.get_rows(&gw, &ids, 1.5).unwrap();
    check("get_rows split", "get_rows", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want.data);
}

#[test]
fn decode_products_of_one_activation_share_its_q8_blocks() {
    // q, k and v (or gate and up) multiply the same activation: it is quantized once, and again
    // only after something could have changed it (here an in-place scale).
    for opts in layouts() {
        let Some(mut p) = Pair::with(&opts) else { return };
        let mut rng = Rng::new(23);
        let (wa, wb) = (random_weight(GgmlType::Q5_0, 70, 96, &mut rng), random_weight(GgmlType::Q8_0, 33, 96, &mut rng));
        let ((ca, ga), (cb, gb)) = (p.weights(&wa), p.weights(&wb));
        let x = rng.acts(96, 1.0);
        let (mut cx, mut gx) = p.acts(&x, 1, 96);
        let d0 = p.gpu.stats().dispatches;
        let ya = p.gpu.linear(&gx, &ga, None).unwrap();
        let yb = p.gpu.linear(&gx, &gb, None).unwrap();
        assert_eq!(p.gpu.stats().dispatches - d0, 3, "one quantize_q8 and two products");
        check("shared q8: first", "linear_q8acts", &browser_llm::block_on(p.gpu.read(&ya)).unwrap(), &p.cpu.linear(&cx, &ca, None).unwrap().data);
        check("shared q8: second", "linear_q8acts", &browser_llm::block_on(p.gpu.read(&yb)).unwrap(), &p.cpu.linear(&cx, &cb, None).unwrap().data);
        p.gpu.softcap(&mut gx, 0.5).unwrap();
        p.cpu.softcap(&mut cx, 0.5).unwrap();
        let d1 = p.gpu.stats().dispatches;
        let yb = p.gpu.linear(&gx, &gb, None).unwrap();
        assert_eq!(p.gpu.stats().dispatches - d1, 2, "quantized again after the in-place soft cap");
        check("q8 after softcap", "linear_q8acts", &browser_llm::block_on(p.gpu.read(&yb)).unwrap(), &p.cpu.linear(&cx, &cb, None).unwrap().data);
    }
}

#[test]
fn add_norm_ends_a_block_in_one_dispatch() {
    // x = res + t (or res + rms_norm(t) * post), h = rms_norm(x) * w, against the CPU's
    // composition of the same ops; a decode row also leaves h's Q8 blocks for the products
    // that read it (once the model has used Q8 activations).
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(29);
    for (rows, n) in [(1, 64), (3, 67), (1, 640), (5, 1000)] {
        let (t, r) = (rng.acts(rows * n, 2.0), rng.acts(rows * n, 1.0));
        let (w, post) = (f32_weight(&rng.acts(n, 1.0)), f32_weight(&rng.acts(n, 1.0)));
        let ((cw, gw), (cp, gp)) = (p.weights(&w), p.weights(&post));
        let ((ct, gt), (cr, gr)) = (p.acts(&t, rows, n), p.acts(&r, rows, n));
        for with_post in [false, true] {
            let (cpost, gpost) = if with_post { (Some(&cp), Some(&gp)) } else { (None, None) };
            let (wx, wh) = p.cpu.add_norm(&ct, cpost, &cr, &cw, 1e-6).unwrap();
            let d0 = p.gpu.stats().dispatches;
            let (gx, gh) = p.gpu.add_norm(&gt, gpost, &gr, &gw, 1e-6).unwrap();
            assert_eq!(p.gpu.stats().dispatches - d0, 1);
            let s = format!("{rows}x{n} post {with_post}");
            check(&format!("add_norm x {s}"), "add_norm", &browser_llm::block_on(p.gpu.read(&gx)).unwrap(), &wx.data);
            check(&format!("add_norm h {s}"), "add_norm", &browser_llm::block_on(p.gpu.read(&gh)).unwrap(), &wh.data);
        }
    }
    // Q8: a Q8_0 product of h right after add_norm dispatches no quantize_q8, and equals the
    // product of h quantized on its own.
    let wq = random_weight(GgmlType::Q8_0, 40, 640, &mut rng);
    let (cq, gq) = p.weights(&wq);
    let (t, r) = (rng.acts(640, 2.0), rng.acts(640, 1.0));
    let w = f32_weight(&rng.acts(640, 1.0));
    let (cw, gw) = p.weights(&w);
    let ((ct, gt), (cr, gr)) = (p.acts(&t, 1, 640), p.acts(&r, 1, 640));
    let (_, ga) = p.acts(&rng.acts(640, 1.0), 1, 640);
    p.gpu.linear(&ga, &gq, None).unwrap(); // the model has used Q8 activations
    let (_, gh) = p.gpu.add_norm(&gt, None, &gr, &gw, 1e-6).unwrap();
    let d0 = p.gpu.stats().dispatches;
    let got = p.gpu.linear(&gh, &gq, None).unwrap();
    assert_eq!(p.gpu.stats().dispatches - d0, 1, "h's Q8 blocks came with it");
    let (_, ch) = p.cpu.add_norm(&ct, None, &cr, &cw, 1e-6).unwrap();
    check("add_norm q8 product", "linear_q8acts", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &p.cpu.linear(&ch, &cq, None).unwrap().data);
}

#[test]
fn gate_and_up_as_one_weight_with_the_glu_in_one_dispatch() {
    // concat_rows joins gate and up on the device; a decode row's linear_glu is one dispatch and
    // equals the CPU's two products and GLU; a batch takes the composed path with the same result.
    for opts in layouts() {
        let Some(mut p) = Pair::with(&opts) else { return };
        let mut rng = Rng::new(31);
        for ty in [GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::F32] {
            let k = 256;
            let (gate, up) = (random_weight(ty, 72, k, &mut rng), random_weight(ty, 72, k, &mut rng));
            let ((cg, gg), (cu, gu)) = (p.weights(&gate), p.weights(&up));
            let joined = p.gpu.concat_rows(&[&gg, &gu]).unwrap().expect("same format and width: joined");
            assert_eq!((joined.n_rows, joined.parts.len()), (144, 1));
            for rows in [1, 3] {
                let x = rng.acts(rows * k, 1.0);
                let (cx, gx) = p.acts(&x, rows, k);
                for gelu in [false, true] {
                    let d0 = p.gpu.stats().dispatches;
                    let got = p.gpu.linear_glu(&gx, &joined, 72, gelu).unwrap();
                    if rows == 1 {
                        assert!(p.gpu.stats().dispatches - d0 <= 2, "one product (and a quantize_q8)");
                    }
                    let got = browser_llm::block_on(p.gpu.read(&got)).unwrap();
                    // The same products, apart, then the GLU kernel: the same arithmetic.
                    let (a, b) = (p.gpu.linear(&gx, &gg, None).unwrap(), p.gpu.linear(&gx, &gu, None).unwrap());
                    let apart = p.gpu.glu(&a, &b, gelu).unwrap();
                    check(&in_layout(&p, &format!("linear_glu {ty} {rows} gelu {gelu}")), "linear_glu", &got, &browser_llm::block_on(p.gpu.read(&apart)).unwrap());
                    if rows == 1 && ops::has_dot_q8(ty) {
                        // Q8 activations on both sides: the CPU's result too.
                        let (a, b) = (p.cpu.linear(&cx, &cg, None).unwrap(), p.cpu.linear(&cx, &cu, None).unwrap());
                        let want = p.cpu.glu(&a, &b, gelu).unwrap();
                        check(&format!("linear_glu {ty} vs cpu gelu {gelu}"), "linear_q8acts", &got, &want.data);
                    }
                }
            }
        }
        // Different formats or widths stay apart.
        let (a, b) = (random_weight(GgmlType::Q5_0, 8, 64, &mut rng), random_weight(GgmlType::Q8_0, 8, 64, &mut rng));
        let ((_, ga), (_, gb)) = (p.weights(&a), p.weights(&b));
        assert!(p.gpu.concat_rows(&[&ga, &gb]).unwrap().is_none());
    }
}

#[test]
fn q_k_and_v_as_one_weight_in_one_dispatch() {
    // concat_rows joins q, k and v (or q and k); linear_split writes each one's outputs to its
    // own buffer, equal to the three products apart (decode, Q8 or not, and prefill).
    for opts in layouts() {
        let Some(mut p) = Pair::with(&opts) else { return };
        let mut rng = Rng::new(41);
        for ty in [GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::F16] {
            let k = 256;
            let widths = [128, 64, 64];
            let ws: Vec<_> = widths.iter().map(|&n| random_weight(ty, n, k, &mut rng)).collect();
            let gws: Vec<_> = ws.iter().map(|w| p.weights(w).1).collect();
            for n_out in [2, 3] {
                let refs: Vec<_> = gws[..n_out].iter().collect();
                let joined = p.gpu.concat_rows(&refs).unwrap().expect("same format and width: joined");
                for rows in [1, 5] {
                    let (_, gx) = p.acts(&rng.acts(rows * k, 1.0), rows, k);
                    let d0 = p.gpu.stats().dispatches;
                    let got = p.gpu.linear_split(&gx, &joined, &widths[..n_out]).unwrap();
                    assert!(p.gpu.stats().dispatches - d0 <= 2, "one product (and a quantize_q8)");
                    for (i, g) in got.iter().enumerate() {
                        assert_eq!((g.rows, g.cols), (rows, widths[i]));
                        let apart = p.gpu.linear(&gx, &gws[i], None).unwrap();
                        let what = in_layout(&p, &format!("linear_split {ty} {n_out} outputs, {rows} rows, output {i}"));
                        check(&what, "linear_split", &browser_llm::block_on(p.gpu.read(g)).unwrap(), &browser_llm::block_on(p.gpu.read(&apart)).unwrap());
                    }
                }
            }
        }
    }
}

#[test]
fn get_rows_every_type() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(3);
    for ty in types() {
        let cols = if ty.block_size() == 1 { 13 } else { 2 * ty.block_size() };
        let t = random_weight(ty, 37, cols, &mut rng);
        let (cw, gw) = p.weights(&t);
        let ids = [36u32, 0, 5, 5, 17];
        let want = p.cpu.get_rows(&cw, &ids, 0.7).unwrap();
        let got = p.gpu.get_rows(&gw, &ids, 0.7).unwrap();
        check(&format!("get_rows {ty}"), "get_rows", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want.data);
        assert!(p.gpu.get_rows(&gw, &[37], 1.0).is_err(), "out-of-range id is an error");
    }
}

#[test]
fn norms_and_elementwise_ops() {
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(5);
    for (rows, cols, n) in [(1, 1, 1), (3, 67, 67), (5, 4 * 33, 33), (2, 640, 640), (7, 1000, 1000)] {
        let x = rng.acts(rows * cols, 2.0);
        let r = rng.acts(rows * cols, 1.0);
        let wv = rng.acts(n, 1.0);
        let w = f32_weight(&wv);
        let (cw, gw) = p.weights(&w);
        let (cx, gx) = p.acts(&x, rows, cols);
        let (cr, gr) = p.acts(&r, rows, cols);
        let s = format!("{rows}x{cols}");

        let want = p.cpu.rms_norm(&cx, &cw, 1e-6).unwrap();
        let got = p.gpu.rms_norm(&gx, &gw, 1e-6).unwrap();
        check(&format!("rms_norm {s}/{n}"), "rms_norm", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want.data);

        for gelu in [true, false] {
            let gate = rng.acts(rows * cols, 6.0);
            let (cg, gg) = p.acts(&gate, rows, cols);
            let want = p.cpu.glu(&cg, &cr, gelu).unwrap();
            let got = p.gpu.glu(&gg, &gr, gelu).unwrap();
            let name = if gelu { "glu_gelu" } else { "glu_silu" };
            check(&format!("{name} {s}"), name, &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want.data);
        }

        let (mut cx2, mut gx2) = p.acts(&x, rows, cols);
        p.cpu.softcap(&mut cx2, 1.7).unwrap();
        p.gpu.softcap(&mut gx2, 1.7).unwrap();
        check(&format!("softcap {s}"), "softcap", &browser_llm::block_on(p.gpu.read(&gx2)).unwrap(), &cx2.data);

        let want = p.cpu.rows_from(&cx, rows - 1).unwrap();
        let got = p.gpu.rows_from(&gx, rows - 1).unwrap();
        check(&format!("rows_from {s}"), "rows_from", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want.data);

        if cols >= 3 {
            let widths = [1, cols - 3, 2];
            let want = p.cpu.split_cols(&cx, &widths).unwrap();
            let got = p.gpu.split_cols(&gx, &widths).unwrap();
            for (w, g) in want.iter().zip(&got) {
                check(&format!("split_cols {s}"), "split_cols", &browser_llm::block_on(p.gpu.read(g)).unwrap(), &w.data);
            }
        }
    }
}

fn attn_config(n_head: usize, n_head_kv: usize, hd: usize) -> ModelConfig {
    ModelConfig {
        arch: Arch::Gemma3,
        n_vocab: 16,
        n_embd: n_head * hd,
        n_layer: 2,
        n_head,
        n_head_kv,
        head_dim: hd,
        head_dim_v: hd,
        n_ff: 16,
        n_ctx_train: 64,
        norm_eps: 1e-6,
        rope_style: RopeStyle::Neox,
        n_rot: hd,
        rope_base: 10000.0,
        rope_base_swa: 10000.0,
        rope_freq_scale: 1.0,
        activation: Activation::Gelu,
        embed_scale: None,
        q_scale: None,
        kq_scale: 1.0 / (hd as f32).sqrt(),
        post_norms: false,
        qk_norm: false,
        sliding_window: None,
        swa_layers: vec![false; 2],
        final_logit_softcap: None,
        pooling: browser_llm::model::Pooling::Mean,
    }
}

#[test]
fn attention_causal_gqa_mqa_window_prefill_then_decode() {
    // Both cache paths: f16 values where the adapter has `shader-f16`, packed u32 pairs without.
    for no_f16 in [false, true] {
        let Some(gpu) = gpu_with(&GpuOptions { no_f16, ..Default::default() }) else { return };
        eprintln!("shader-f16 in use: {}", gpu.ctx.has_f16());
        attention_cases(Pair { cpu: CpuBackend::with_threads(1), gpu });
    }
}

fn attention_cases(mut p: Pair) {
    let mut rng = Rng::new(13);
    // (query heads, kv heads, head dim, window, context, tokens per call): MQA like Gemma 3, GQA,
    // MHA with odd sizes; a prefill then single-token steps then a small batch. The last two
    // reach past `PV_CHUNK` (256) cached positions, so the values are summed in several chunks
    // (split-K), with and without a window.
    let short = [7, 1, 1, 3, 1, 1, 1, 1];
    let cases: [(usize, usize, usize, Option<usize>, usize, &[usize]); 6] = [
        (4, 1, 256, None, 40, &short),
        (4, 1, 256, Some(5), 40, &short),
        (6, 2, 38, None, 40, &short),
        (3, 3, 2, Some(1), 40, &short),
        (4, 1, 64, None, 600, &[300, 1, 1, 5, 1, 257, 1]),
        (2, 2, 32, Some(260), 300, &[270, 1, 2, 1]),
    ];
    for (nh, nkv, hd, window, n_ctx, steps) in cases {
        let cfg = attn_config(nh, nkv, hd);
        let mut ckv = p.cpu.kv_cache(cfg.kv_shape(n_ctx)).unwrap();
        let mut gkv = p.gpu.kv_cache(cfg.kv_shape(n_ctx)).unwrap();
        let mut pos = 0;
        for &n in steps {
            let q = rng.acts(n * nh * hd, 2.0);
            let k = rng.acts(n * nkv * hd, 2.0);
            let v = rng.acts(n * nkv * hd, 1.0);
            let (cq, gq) = p.acts(&q, n, nh * hd);
            let (ck, gk) = p.acts(&k, n, nkv * hd);
            let (cv, gv) = p.acts(&v, n, nkv * hd);
            let ap = AttnParams { layer: 1, pos0: pos, n_head: nh, n_head_kv: nkv, head_dim: hd, head_dim_v: hd, window, scale: cfg.kq_scale };
            // The cache written by attn_prep (RoPE, then k and v stored as f16), then attention.
            let rope = RopeParams { pos0: pos, head_dim: hd, n_rot: hd, base: 10000.0, freq_scale: 1.0, neox: true };
            let cprep = QkPrep { q_norm: None, k_norm: None, eps: 1e-6, rope, freq_factors: None, q_scale: None };
            let gprep = QkPrep { q_norm: None, k_norm: None, eps: 1e-6, rope, freq_factors: None, q_scale: None };
            let cq = p.cpu.attn_prep(&mut ckv, cq, ck, &cv, cprep, ap).unwrap();
            let gq = p.gpu.attn_prep(&mut gkv, gq, gk, &gv, gprep, ap).unwrap();
            let want = p.cpu.attend(&ckv, &cq, ap).unwrap();
            let got = p.gpu.attend(&gkv, &gq, ap).unwrap();
            let what = format!("attention heads {nh}/{nkv} hd {hd} window {window:?} pos {pos} n {n}");
            check(&what, "attention", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want.data);
            pos += n;
        }
        let ap = AttnParams { layer: 0, pos0: n_ctx, n_head: nh, n_head_kv: nkv, head_dim: hd, head_dim_v: hd, window, scale: 1.0 };
        let (_, gq) = p.acts(&vec![0.0; nh * hd], 1, nh * hd);
        let err = p.gpu.attend(&gkv, &gq, ap).err().expect("overflow");
        assert_eq!(err.code, browser_llm::ErrorCode::ContextOverflow);
    }
}

#[test]
fn attention_over_a_q8_0_cache_equals_the_cpu() {
    // kvCache "q8_0": qk_prep quantizes k and v into 9-word blocks, attention quantizes q and
    // multiplies in integers (llama.cpp's flash attention over a q8_0 cache, as the CPU does);
    // MQA with Gemma 3's head of 256, GQA, past one PV_CHUNK with and without a window. The
    // caches read back in the portable layout differ only where a rotated key lands on the other
    // side of a rounding boundary (a few quants by one step).
    let Some(gpu) = gpu() else { return };
    let mut p = Pair { cpu: CpuBackend::with_threads(1), gpu };
    let mut rng = Rng::new(29);
    let short = [7, 1, 1, 3, 1];
    let cases: [(usize, usize, usize, Option<usize>, usize, &[usize]); 4] = [
        (4, 1, 256, None, 40, &short),
        (6, 2, 64, Some(5), 40, &short),
        (4, 1, 64, None, 600, &[300, 1, 5, 257, 1]),
        (2, 2, 32, Some(260), 300, &[270, 1, 2]),
    ];
    for (nh, nkv, hd, window, n_ctx, steps) in cases {
        let cfg = attn_config(nh, nkv, hd);
        let shape = cfg.kv_shape(n_ctx).with_type(KvType::Q8_0);
        let (mut ckv, mut gkv) = (p.cpu.kv_cache(shape).unwrap(), p.gpu.kv_cache(shape).unwrap());
        let mut pos = 0;
        for &n in steps {
            let (q, k, v) = (rng.acts(n * nh * hd, 2.0), rng.acts(n * nkv * hd, 2.0), rng.acts(n * nkv * hd, 1.0));
            let ((cq, gq), (ck, gk), (cv, gv)) = (p.acts(&q, n, nh * hd), p.acts(&k, n, nkv * hd), p.acts(&v, n, nkv * hd));
            let ap = AttnParams { layer: 1, pos0: pos, n_head: nh, n_head_kv: nkv, head_dim: hd, head_dim_v: hd, window, scale: cfg.kq_scale };
            let rope = RopeParams { pos0: pos, head_dim: hd, n_rot: hd, base: 10000.0, freq_scale: 1.0, neox: true };
            let cq = p.cpu.attn_prep(&mut ckv, cq, ck, &cv, QkPrep { q_norm: None, k_norm: None, eps: 1e-6, rope, freq_factors: None, q_scale: None }, ap).unwrap();
            let gq = p.gpu.attn_prep(&mut gkv, gq, gk, &gv, QkPrep { q_norm: None, k_norm: None, eps: 1e-6, rope, freq_factors: None, q_scale: None }, ap).unwrap();
            let want = p.cpu.attend(&ckv, &cq, ap).unwrap();
            let got = p.gpu.attend(&gkv, &gq, ap).unwrap();
            let what = format!("q8_0 attention heads {nh}/{nkv} hd {hd} window {window:?} pos {pos} n {n}");
            check(&what, "attention", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want.data);
            pos += n;
        }
        let (cb, gb) = (browser_llm::block_on(p.cpu.read_kv(&ckv, 1, pos)).unwrap(), browser_llm::block_on(p.gpu.read_kv(&gkv, 1, pos)).unwrap());
        assert_eq!(cb.len(), gb.len(), "portable q8_0 bytes");
        assert_eq!(cb.len(), pos * nkv * hd * 2 / 32 * 34, "34 bytes per 32 values");
        let differ = cb.iter().zip(&gb).filter(|(a, b)| a != b).count();
        assert!(differ * 200 < cb.len(), "{differ} of {} cache bytes differ between the CPU and the GPU", cb.len());
        // The GPU's cache written back from the CPU's bytes reads back the same (the layouts
        // convert both ways), and attention over it equals the CPU's again.
        p.gpu.write_kv(&mut gkv, 1, pos, &cb).unwrap();
        assert_eq!(browser_llm::block_on(p.gpu.read_kv(&gkv, 1, pos)).unwrap(), cb);
    }
}

#[test]
fn attn_prep_norms_ropes_scales_and_stores_in_one_dispatch() {
    // Per-head q/k norms (Gemma 3, Qwen 3), NEOX or normal pairs, a partial rotary width,
    // freq factors, a q scale, MQA and MHA, a prefill then decode steps: the returned q and the
    // attention over what was stored equal the CPU's norm / rope / scale / store_kv.
    let Some(mut p) = Pair::new() else { return };
    let mut rng = Rng::new(37);
    let cases = [
        // (heads, kv heads, head dim, rotary dims, neox, qk-norm, freq factors, q scale)
        (4, 1, 256, 256, true, true, false, Some(0.0625)),
        (6, 2, 38, 38, false, false, false, None),
        (3, 3, 64, 32, true, false, true, None),
        (2, 1, 16, 8, false, true, true, Some(2.0)),
    ];
    for (nh, nkv, hd, n_rot, neox, qk_norm, with_ff, q_scale) in cases {
        let cfg = attn_config(nh, nkv, hd);
        let (qn, kn) = (f32_weight(&rng.acts(hd, 1.0)), f32_weight(&rng.acts(hd, 1.0)));
        let ff = f32_weight(&(0..n_rot / 2).map(|i| 1.0 + (i % 3) as f32).collect::<Vec<_>>());
        let ((cqn, gqn), (ckn, gkn), (cff, gff)) = (p.weights(&qn), p.weights(&kn), p.weights(&ff));
        let mut ckv = p.cpu.kv_cache(cfg.kv_shape(32)).unwrap();
        let mut gkv = p.gpu.kv_cache(cfg.kv_shape(32)).unwrap();
        let mut pos = 0;
        for n in [5, 1, 1, 3] {
            let (q, k, v) = (rng.acts(n * nh * hd, 2.0), rng.acts(n * nkv * hd, 2.0), rng.acts(n * nkv * hd, 1.0));
            let ((cq, gq), (ck, gk), (cv, gv)) = (p.acts(&q, n, nh * hd), p.acts(&k, n, nkv * hd), p.acts(&v, n, nkv * hd));
            let rope = RopeParams { pos0: pos, head_dim: hd, n_rot, base: 10000.0, freq_scale: 0.5, neox };
            let ap = AttnParams { layer: 1, pos0: pos, n_head: nh, n_head_kv: nkv, head_dim: hd, head_dim_v: hd, window: None, scale: cfg.kq_scale };
            let cprep = QkPrep { q_norm: qk_norm.then_some(&cqn), k_norm: qk_norm.then_some(&ckn), eps: 1e-6, rope, freq_factors: with_ff.then_some(&cff), q_scale };
            let gprep = QkPrep { q_norm: qk_norm.then_some(&gqn), k_norm: qk_norm.then_some(&gkn), eps: 1e-6, rope, freq_factors: with_ff.then_some(&gff), q_scale };
            let want_q = p.cpu.attn_prep(&mut ckv, cq, ck, &cv, cprep, ap).unwrap();
            let d0 = p.gpu.stats().dispatches;
            let got_q = p.gpu.attn_prep(&mut gkv, gq, gk, &gv, gprep, ap).unwrap();
            assert_eq!(p.gpu.stats().dispatches - d0, 1);
            let what = format!("attn_prep heads {nh}/{nkv} hd {hd} rot {n_rot} neox {neox} norm {qk_norm} ff {with_ff} pos {pos}");
            check(&what, "rope", &browser_llm::block_on(p.gpu.read(&got_q)).unwrap(), &want_q.data);
            let want = p.cpu.attend(&ckv, &want_q, ap).unwrap();
            let got = p.gpu.attend(&gkv, &got_q, ap).unwrap();
            check(&format!("{what}: attention"), "attention", &browser_llm::block_on(p.gpu.read(&got)).unwrap(), &want.data);
            pos += n;
        }
    }
}

#[test]
fn argmax_and_top_k_select_on_the_device() {
    let Some(mut g) = gpu() else { return };
    let mut rng = Rng::new(17);
    for n in [1usize, 5, 255, 2049, 262_144 + 3] {
        let mut x = rng.acts(n, 3.0);
        if n > 10 {
            // Ties: the lower index wins.
            x[n - 1] = 50.0;
            x[7] = 50.0;
        }
        let gx = g.upload_act(&x, 1, n).unwrap();
        let mut want: Vec<(u32, f32)> = x.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let am = browser_llm::block_on(g.argmax_async(&gx)).unwrap();
        assert_eq!(am, want[0], "argmax n={n}");
        for k in [1usize, 3, 40, 64] {
            let got = browser_llm::block_on(g.top_k_async(&gx, k)).unwrap();
            assert_eq!(got, want[..k.min(n)].to_vec(), "top-{k} n={n}");
        }
        // Several rows at once (a speculative draft's): each row's argmax, as the host's.
        let rows = 3;
        let xs = rng.acts(rows * n, 3.0);
        let gxs = g.upload_act(&xs, rows, n).unwrap();
        let want: Vec<(u32, f32)> = xs.chunks_exact(n).map(|r| browser_llm::logits::top_k(r, 1)[0]).collect();
        assert_eq!(browser_llm::block_on(g.argmax_rows_async(&gxs)).unwrap(), want, "argmax of {rows} rows, n={n}");
    }
}

/// Audit M3: a NaN or infinite logit anywhere in the row makes the device argmax report a
/// non-finite value (the sampler then returns a typed error instead of sampling id 0); finite rows
/// are unchanged (above). Top-k ranks non-finite values first (issue 25: it skipped NaN, so a row
/// with some NaN logits was sampled from its finite rest), so the sampler sees one and reports it.
#[test]
fn m3_device_argmax_reports_nan_and_inf() {
    let Some(mut g) = gpu() else { return };
    let mut rng = Rng::new(5);
    for n in [1usize, 300, 262_144 + 3] {
        for at in [0, n / 2, n - 1] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut x = rng.acts(n, 3.0);
                x[at] = bad;
                let gx = g.upload_act(&x, 1, n).unwrap();
                let (_, v) = browser_llm::block_on(g.argmax_async(&gx)).unwrap();
                assert!(!v.is_finite(), "n={n}: {bad} at {at} not reported (got {v})");
                let top = browser_llm::block_on(g.top_k_async(&gx, 5.min(n))).unwrap();
                assert!(top[0].0 as usize == at && !top[0].1.is_finite(), "n={n}: top-k of {bad} at {at}: {top:?}");
                assert!(top[1..].iter().all(|c| c.1.is_finite()), "n={n}: the rest stays ranked: {top:?}");
            }
        }
        let gx = g.upload_act(&vec![f32::NAN; n], 1, n).unwrap();
        let (_, v) = browser_llm::block_on(g.argmax_async(&gx)).unwrap();
        assert!(v.is_nan(), "all NaN, n={n}: got {v}");
        let got = browser_llm::block_on(g.top_k_async(&gx, 5)).unwrap();
        assert!(got.iter().all(|c| !c.1.is_finite()), "all NaN top-k: {got:?}");
    }
}

/// The coalescing check: with TRACE (`shaders/common/bytes.wgsl`) a decode product records the
/// word each of the first 32 lanes of workgroup 0 reads in its first weight loads. In the
/// hardware layout the first load of those 32 lanes (one instruction) falls in at most 8 sectors
/// of 32 bytes (F32 rows: 16, 16 bytes a lane); in the per-row layout the same lanes read 32
/// different rows, one sector each or more.
#[test]
fn hardware_layout_reads_weights_coalesced() {
    const LOADS: usize = 16;
    for layout in [GpuLayout::Software, GpuLayout::Hardware] {
        let Some(mut g) = gpu_with(&GpuOptions { layout: Some(layout), ..Default::default() }) else { return };
        let mut rng = Rng::new(53);
        for ty in types() {
            let (rows, cols) = (64, 1024);
            let t = random_weight(ty, rows, cols, &mut rng);
            let w = g.weight(&t.0, t.1.clone()).unwrap();
            let x = g.upload_act(&rng.acts(cols, 1.0), 1, cols).unwrap();
            let trace = g.upload_act(&vec![f32::from_bits(u32::MAX); 32 * LOADS], 32, LOADS).unwrap();
            g.set_trace(Some(trace));
            g.linear(&x, &w, None).unwrap();
            let words = browser_llm::block_on(g.read_trace()).unwrap();
            let sectors = |load: usize| {
                let mut s: Vec<u32> = (0..32).map(|lane| words[lane * LOADS + load]).filter(|&w| w != u32::MAX).map(|w| w * 4 / 32).collect();
                s.sort_unstable();
                s.dedup();
                s.len()
            };
            let first = sectors(0);
            let all: std::collections::BTreeSet<u32> = words.iter().filter(|&&w| w != u32::MAX).map(|w| w * 4 / 32).collect();
            eprintln!("{ty} [{}]: first load of 32 lanes in {first} sectors; their first {LOADS} loads in {}", layout.name(), all.len());
            assert!(words[0] != u32::MAX, "{ty}: lane 0 recorded no load");
            match layout {
                GpuLayout::Hardware => {
                    let limit = if ty == GgmlType::F32 { 16 } else { 8 };
                    assert!(first <= limit, "{ty}: the hardware layout's first load touches {first} sectors (limit {limit})");
                }
                GpuLayout::Software => assert!(first >= 32, "{ty}: per-row lanes read 32 rows, one sector each at least: {first}"),
            }
        }
    }
}

