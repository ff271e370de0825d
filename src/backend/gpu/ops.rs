//! One Rust function per shader (`shaders/<name>.wgsl` <-> `ops::<name>`). Each does, in order:
//! shape checks, the pipeline key, the bindings, the dispatch math; then records one dispatch
//! into the backend's open command encoder (nothing is submitted here).
//!
//! Binding convention (most shaders): read-only inputs first, then the read-write output, then
//! the uniform `Params`, whose Rust twin is the `#[repr(C)]` struct of the same shader below
//! (a test checks both layouts agree, field by field, through naga). Each op passes its uniform's
//! binding to `dispatch` (`attention.wgsl` has more bindings than the rule fits: its uniform is
//! at 7, an input after it at 8), so the shader's own declarations are the reference.

use super::shader::ShaderKey;
use super::context::GpuLayout;
use super::{Bind, GpuAct, GpuBackend, GpuKv, GpuWeight};
use crate::backend::{AttnParams, KvType, QkPrep, RopeParams, KV_BLOCK};
use crate::error::{Error, Result};
use crate::quant::GgmlType;

/// Invocations per workgroup of the elementwise and per-row kernels (every WebGPU adapter allows
/// 256; 64 keeps software GPUs' per-workgroup overhead low).
pub const WG: u32 = 64;
/// The cooperative decode products (`GpuLayout::Hardware`, `linear.wgsl` COOP): invocations per
/// workgroup, weight rows per workgroup, and lanes per row (`COOP_WG / COOP_ROWS`). 32 lanes of 4
/// elements read 128 consecutive values of a row per step (one 64-144 byte run of a quantized
/// row: 2-5 sectors of 32 bytes), and a 512-row product launches 16,384 invocations.
pub const COOP_WG: u32 = 256;
pub const COOP_ROWS: u32 = 8;
pub const COOP_LANES: u32 = COOP_WG / COOP_ROWS;
/// Invocations per workgroup of the single-workgroup reductions (argmax, top-k merge).
pub const WG_REDUCE: u32 = 256;
/// Tokens per invocation of the prefill matrix product (each decoded weight is used this often);
/// `shaders/linear.wgsl` spells the 8 accumulators out (`TILE8`).
pub const TILE_PREFILL: u32 = 8;
/// Cached positions per workgroup of `attention.wgsl`'s `attend` pass: a longer context is split
/// into chunks of this many positions whose partial results its `reduce` entry combines (split-K).
pub const PV_CHUNK: u32 = 256;
/// Elements per workgroup in the first top-k stage (held in workgroup memory).
pub const TOPK_CHUNK: u32 = 2048;
/// Largest head (keys) over a q8_0 cache: `attention.wgsl` holds the query head's q8_0 blocks in
/// workgroup memory.
pub const MAX_Q8_HEAD_DIM: u32 = 512;
/// Largest k the top-k kernel returns.
pub const MAX_TOP_K: usize = 64;

macro_rules! params {
    ($name:ident { $($f:ident : $t:ty),* $(,)? }) => {
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $(pub $f: $t),* }
        impl $name {
            /// (field, byte offset), for the layout test against the WGSL struct.
            pub const FIELDS: &'static [(&'static str, usize)] = &[$((stringify!($f), std::mem::offset_of!($name, $f))),*];
        }
    };
}

params!(LinearParams { n_rows: u32, k: u32, n_tok: u32, row_off: u32, out_stride: u32, row_bytes: u32, split1: u32, split2: u32 });
params!(GetRowsParams { n_ids: u32, n_cols: u32, row_bytes: u32, scale: f32 });
params!(RmsNormParams { n: u32, n_chunks: u32, eps: f32, _pad: u32 });
params!(AddNormParams { n: u32, n_rows: u32, eps: f32, _pad: u32 });
params!(AttentionParams {
    n_rows: u32, n_head: u32, group: u32, head_dim: u32, head_dim_v: u32, k_dim: u32, v_dim: u32,
    pos0: u32, window: u32, score_stride: u32, scale: f32, n_chunks: u32,
});
params!(LenParams { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 });
params!(QkPrepParams {
    n_rows: u32, n_head: u32, n_head_kv: u32, head_dim: u32, head_dim_v: u32, n_rot: u32, pos0: u32,
    theta_scale: f32, freq_scale: f32, eps: f32, q_scale: f32, _pad: u32,
});
params!(RopeShiftParams { n_rows: u32, n_head_kv: u32, head_dim: u32, n_rot: u32, dst0: u32, delta: i32, theta_scale: f32, freq_scale: f32 });
params!(ScalarParams { n: u32, s: f32, _pad0: u32, _pad1: u32 });
params!(SplitColsParams { n_rows: u32, in_cols: u32, out_cols: u32, col_off: u32 });
params!(TopKParams { n: u32, k: u32, _pad0: u32, _pad1: u32 });

/// The Rust twin of each shader's `Params` (the layout test walks this table).
pub const PARAM_STRUCTS: &[(&str, &[(&str, usize)], usize)] = &[
    ("linear", LinearParams::FIELDS, std::mem::size_of::<LinearParams>()),
    ("quantize_q8", LenParams::FIELDS, std::mem::size_of::<LenParams>()),
    ("get_rows", GetRowsParams::FIELDS, std::mem::size_of::<GetRowsParams>()),
    ("rms_norm", RmsNormParams::FIELDS, std::mem::size_of::<RmsNormParams>()),
    ("add_norm", AddNormParams::FIELDS, std::mem::size_of::<AddNormParams>()),
    ("attention", AttentionParams::FIELDS, std::mem::size_of::<AttentionParams>()),
    ("qk_prep", QkPrepParams::FIELDS, std::mem::size_of::<QkPrepParams>()),
    ("glu", LenParams::FIELDS, std::mem::size_of::<LenParams>()),
    ("argmax", LenParams::FIELDS, std::mem::size_of::<LenParams>()),
    ("rope_shift", RopeShiftParams::FIELDS, std::mem::size_of::<RopeShiftParams>()),
    ("softcap", ScalarParams::FIELDS, std::mem::size_of::<ScalarParams>()),
    ("split_cols", SplitColsParams::FIELDS, std::mem::size_of::<SplitColsParams>()),
    ("top_k", TopKParams::FIELDS, std::mem::size_of::<TopKParams>()),
];

/// Workgroup counts for `n` invocations in groups of `wg`, split over x and y when above the
/// 65535 per-dimension limit (shaders flatten them with `flat_wg`).
pub fn grid(n: usize, wg: u32) -> (u32, u32, u32) {
    let groups = n.div_ceil(wg as usize).max(1) as u32;
    if groups <= 65535 {
        (groups, 1, 1)
    } else {
        (65535, groups.div_ceil(65535), 1)
    }
}

fn shape_err(what: &str, a: usize, b: usize) -> Error {
    Error::internal(format!("{what}: shape mismatch ({a} vs {b})"))
}

/// The defines naming a weight type for `common/dequant.wgsl`: `W_<TYPE>`, `W_HELPER` (the path
/// of the type's decode helper, which dequant.wgsl includes) and, for block formats, `W_QUANT`.
pub fn weight_defines(key: ShaderKey, ty: GgmlType) -> ShaderKey {
    key.flag(&format!("W_{}", ty.name())).def("W_HELPER", ty.wgsl_helper()).flag_if(ty.block_size() > 1, "W_QUANT")
}

/// `x_vec4`: the shared dimension is a multiple of 4 (every quantized type), so activations are
/// read as `vec4` (a quarter of the loads).
/// Decode (TILE = 1) of these formats reads whole blocks (`dot_blk` in their helper; the
/// `dot_blk` column of the format table).
pub fn has_dot_blk(ty: GgmlType) -> bool {
    ty.has_dot_blk()
}

/// Decode (TILE = 1) of these formats can take Q8 activations (`quantize_q8`) and multiply by
/// `dot4I8Packed`, one invocation per row (`dot_q8` in their helper, `XQ8` in `linear.wgsl`).
/// These are the formats whose CPU dot product also takes Q8_0 activations, so both backends
/// sum the same integers.
pub fn has_dot_q8(ty: GgmlType) -> bool {
    ty.vec_dot_type() == GgmlType::Q8_0
}

/// `xq8`: decode with Q8 activations (only for `has_dot_q8` types, tile 1, k % 32 == 0).
pub fn linear_key(ty: GgmlType, tile: u32, bias: bool, x_vec4: bool, xq8: bool) -> ShaderKey {
    let xq8 = xq8 && tile == 1 && has_dot_q8(ty);
    weight_defines(ShaderKey::new("linear", "main"), ty)
        .def("WG", WG)
        .flag_if(tile == TILE_PREFILL, "TILE8")
        .flag_if(bias, "BIAS")
        .flag_if(x_vec4 && !xq8, "X_VEC4")
        .flag_if(tile == 1 && x_vec4 && has_dot_blk(ty) && !xq8, "DOT_BLK")
        .flag_if(xq8, "XQ8")
}
/// `key` (a decode product's, tile 1) in the cooperative layout (`linear.wgsl` COOP): whole-block
/// `dot_blk` reads give way to coalesced groups of 4 (`dq4`) or block parts (`dot_q8_part`);
/// `subgroups`: partial sums add up by `subgroupAdd` (`GpuContext::subgroups`).
pub fn coop_key(mut key: ShaderKey, subgroups: bool) -> ShaderKey {
    key.defines.remove("DOT_BLK");
    key.def("WG", COOP_WG).def("ROWS", COOP_ROWS).flag("COOP").flag_if(subgroups, "SUBGROUPS")
}
/// The decode-product key for this backend's layout, and its workgroups for `n_rows` rows.
fn decode_key(b: &GpuBackend, key: ShaderKey, n_rows: usize) -> Result<(ShaderKey, (u32, u32, u32))> {
    match b.ctx.layout {
        // Subgroup sums only where a subgroup never spans two rows.
        GpuLayout::Hardware => Ok((coop_key(key, b.ctx.subgroups && b.ctx.info.subgroup_max_size <= COOP_LANES), grid(n_rows, COOP_ROWS))),
        GpuLayout::Software => Ok((key, (per_row_groups(n_rows)?, 1, 1))),
    }
}
/// Workgroups of a per-row product (one invocation per row; y is the token tile).
fn per_row_groups(n_rows: usize) -> Result<u32> {
    let wgs = n_rows.div_ceil(WG as usize);
    if wgs > 65535 {
        return Err(Error::unsupported_model(format!("a weight part of {n_rows} rows is too large for one dispatch")));
    }
    Ok(wgs as u32)
}
/// A product whose rows go to `outputs` (2 or 3) buffers (`linear.wgsl` with SPLIT / SPLIT3).
pub fn linear_split_key(ty: GgmlType, tile: u32, x_vec4: bool, xq8: bool, outputs: usize) -> ShaderKey {
    linear_key(ty, tile, false, x_vec4, xq8).flag("SPLIT").flag_if(outputs == 3, "SPLIT3")
}
/// The decode product of a gate-then-up weight with its GLU (`linear.wgsl` with GLU).
pub fn linear_glu_key(ty: GgmlType, x_vec4: bool, xq8: bool, gelu: bool) -> ShaderKey {
    linear_key(ty, 1, false, x_vec4, xq8).flag("GLU").flag_if(gelu, "GELU")
}
pub fn get_rows_key(ty: GgmlType) -> ShaderKey {
    weight_defines(ShaderKey::new("get_rows", "main"), ty).def("WG", WG)
}
pub fn rms_norm_key() -> ShaderKey {
    ShaderKey::new("rms_norm", "main").def("WG", WG)
}
pub fn add_norm_key(post: bool, q8: bool) -> ShaderKey {
    ShaderKey::new("add_norm", "main").def("WG", WG).flag_if(post, "POST").flag_if(q8, "Q8")
}
/// `q8`: the cache holds q8_0 blocks (`KV_Q8`, see [`GpuKv`]).
pub fn qk_prep_key(neox: bool, freq_factors: bool, q_norm: bool, k_norm: bool, q_scale: bool, q8: bool) -> ShaderKey {
    ShaderKey::new("qk_prep", "main")
        .def("WG", WG)
        .flag_if(q8, "KV_Q8")
        .flag_if(neox, "NEOX")
        .flag_if(freq_factors, "FREQ_FACTORS")
        .flag_if(q_norm, "Q_NORM")
        .flag_if(k_norm, "K_NORM")
        .flag_if(q_scale, "Q_SCALE")
}
/// `f16`: the adapter has `shader-f16` (an f16 KV cache is read as f16 values); `q8`: the cache
/// holds q8_0 blocks (`KV_Q8`).
pub fn attention_key(entry: &'static str, f16: bool, q8: bool) -> ShaderKey {
    ShaderKey::new("attention", entry)
        .def("WG", WG)
        .def("PV_CHUNK", PV_CHUNK)
        .def("Q_BLOCKS", MAX_Q8_HEAD_DIM / 32)
        .flag_if(f16 && !q8, "F16")
        .flag_if(q8, "KV_Q8")
}
pub fn rope_shift_key(neox: bool, freq_factors: bool, q8: bool) -> ShaderKey {
    ShaderKey::new("rope_shift", "main").def("WG", WG).flag_if(neox, "NEOX").flag_if(freq_factors, "FREQ_FACTORS").flag_if(q8, "KV_Q8")
}
pub fn glu_key(gelu: bool) -> ShaderKey {
    ShaderKey::new("glu", "main").def("WG", WG).flag_if(gelu, "GELU")
}
pub fn simple_key(shader: &'static str) -> ShaderKey {
    ShaderKey::new(shader, "main").def("WG", WG)
}
pub fn argmax_key() -> ShaderKey {
    ShaderKey::new("argmax", "main").def("WG", WG_REDUCE)
}
pub fn top_k_key(entry: &'static str) -> ShaderKey {
    ShaderKey::new("top_k", entry).def("WG", WG_REDUCE).def("CH", TOPK_CHUNK)
}

/// Every shader variant the backend can request (validated by naga in `cargo test`).
pub fn all_variants() -> Vec<ShaderKey> {
    let mut v = Vec::new();
    for ty in GgmlType::ALL {
        for tile in [1, TILE_PREFILL] {
            for bias in [false, true] {
                for x_vec4 in [false, true] {
                    v.push(linear_key(ty, tile, bias, x_vec4, false));
                }
            }
            if has_dot_q8(ty) {
                for bias in [false, true] {
                    v.push(linear_key(ty, 1, bias, true, true));
                }
            }
        }
        for outputs in [2, 3] {
            for tile in [1, TILE_PREFILL] {
                for x_vec4 in [false, true] {
                    v.push(linear_split_key(ty, tile, x_vec4, false, outputs));
                }
            }
            if has_dot_q8(ty) {
                v.push(linear_split_key(ty, 1, true, true, outputs));
            }
        }
        for gelu in [false, true] {
            for x_vec4 in [false, true] {
                v.push(linear_glu_key(ty, x_vec4, false, gelu));
            }
            if has_dot_q8(ty) {
                v.push(linear_glu_key(ty, true, true, gelu));
            }
        }
        v.push(get_rows_key(ty));
        // The cooperative decode products, with and without subgroups.
        for sub in [false, true] {
            let mut coop = vec![linear_key(ty, 1, false, true, false), linear_key(ty, 1, true, false, false)];
            coop.extend((2..=3).map(|n| linear_split_key(ty, 1, true, false, n)));
            coop.extend([false, true].map(|g| linear_glu_key(ty, true, false, g)));
            if has_dot_q8(ty) {
                coop.extend([linear_key(ty, 1, false, true, true), linear_split_key(ty, 1, true, true, 3), linear_glu_key(ty, true, true, true)]);
            }
            v.extend(coop.into_iter().map(|k| coop_key(k, sub)));
        }
    }
    v.push(rms_norm_key());
    for f in [false, true] {
        v.push(add_norm_key(f, false));
        v.push(add_norm_key(f, true));
        v.push(glu_key(f));
    }
    for f16 in [false, true] {
        v.extend(["attend", "reduce"].map(|e| attention_key(e, f16, false)));
    }
    v.extend(["attend", "reduce"].map(|e| attention_key(e, false, true)));
    for bits in 0..64u32 {
        let f = |i: u32| bits & (1 << i) != 0;
        v.push(qk_prep_key(f(0), f(1), f(2), f(3), f(4), f(5)));
    }
    for bits in 0..8u32 {
        v.push(rope_shift_key(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0));
    }
    v.extend([argmax_key(), top_k_key("chunks"), top_k_key("merge")]);
    v.extend(["softcap", "split_cols", "quantize_q8"].map(simple_key));
    v
}

/// Embedding rows for `ids`, times `scale`.
pub fn get_rows(b: &mut GpuBackend, w: &GpuWeight, ids: &[u32], scale: f32) -> Result<GpuAct> {
    crate::logits::check_token_ids(ids, w.n_rows)?;
    let out = b.alloc(ids.len(), w.n_cols)?;
    for part in &w.parts {
        let mut pairs = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if (part.row0..part.row0 + part.n_rows).contains(&id) {
                pairs.extend([i as u32, (id - part.row0) as u32]);
            }
        }
        if pairs.is_empty() {
            continue;
        }
        let ids_buf = b.upload_u32(&pairs);
        let p = GetRowsParams { n_ids: (pairs.len() / 2) as u32, n_cols: w.n_cols as u32, row_bytes: w.row_bytes as u32, scale };
        let groups = grid(pairs.len() / 2 * w.n_cols, WG);
        b.dispatch(get_rows_key(w.ty), &p, &[(0, Bind::Buf(&part.buf)), (1, Bind::Buf(&ids_buf)), (3, Bind::Act(&out))], 4, groups)?;
    }
    Ok(out)
}

/// RMSNorm of each `w.n_cols`-wide chunk, times `w`.
pub fn rms_norm(b: &mut GpuBackend, x: &GpuAct, w: &GpuWeight, eps: f32) -> Result<GpuAct> {
    let n = w.f32_len()?;
    if x.cols % n != 0 {
        return Err(shape_err("rms_norm", x.cols, n));
    }
    let out = b.alloc(x.rows, x.cols)?;
    let n_chunks = x.len() / n;
    let p = RmsNormParams { n: n as u32, n_chunks: n_chunks as u32, eps, _pad: 0 };
    let binds = [(0, Bind::Act(x)), (1, Bind::Buf(&w.parts[0].buf)), (3, Bind::Act(&out))];
    b.dispatch(rms_norm_key(), &p, &binds, 4, grid(n_chunks, 1))?;
    Ok(out)
}

/// The end of a block: `x = res + t` (with `post`, Gemma's post-norm: `res + rms_norm(t) *
/// post`), then the next block's input `h = rms_norm(x) * w`, in one dispatch. For a decode row,
/// once the model has used Q8 activations (`GpuBackend::q8_of`), `h` is also written as Q8
/// blocks and cached for the products that read it (no `quantize_q8` dispatch).
pub fn add_norm(b: &mut GpuBackend, t: &GpuAct, post: Option<&GpuWeight>, res: &GpuAct, w: &GpuWeight, eps: f32) -> Result<(GpuAct, GpuAct)> {
    let n = w.f32_len()?;
    if t.cols != n || (res.rows, res.cols) != (t.rows, t.cols) {
        return Err(shape_err("add_norm", t.cols, n));
    }
    if let Some(pw) = post {
        if pw.f32_len()? != n {
            return Err(shape_err("add_norm post-norm", pw.f32_len()?, n));
        }
    }
    let x = b.alloc(t.rows, n)?;
    let h = b.alloc(t.rows, n)?;
    let hq = if b.q8_acts && b.q8_used && t.rows == 1 && n % 32 == 0 { Some(b.alloc(1, n / 32 * 9)?) } else { None };
    let p = AddNormParams { n: n as u32, n_rows: t.rows as u32, eps, _pad: 0 };
    let mut binds = vec![
        (0, Bind::Act(t)),
        (1, Bind::Act(res)),
        (3, Bind::Act(&x)),
        (5, Bind::Buf(&w.parts[0].buf)),
        (6, Bind::Act(&h)),
    ];
    if let Some(pw) = post {
        binds.push((2, Bind::Buf(&pw.parts[0].buf)));
    }
    if let Some(q) = &hq {
        binds.push((7, Bind::Act(q)));
    }
    b.dispatch(add_norm_key(post.is_some(), hq.is_some()), &p, &binds, 4, grid(t.rows, 1))?;
    if let Some(q) = hq {
        b.q8_cache_set(&h, q);
    }
    Ok((x, h))
}

/// `act(x @ gate^T) * (x @ up^T)` of a weight holding gate's rows then up's. A decode row of a
/// weight in one part is one dispatch (`linear.wgsl` with GLU); otherwise the product, a split
/// and `glu`.
pub fn linear_glu(b: &mut GpuBackend, x: &GpuAct, w: &GpuWeight, gelu: bool) -> Result<GpuAct> {
    if w.n_rows % 2 != 0 {
        return Err(shape_err("linear_glu", w.n_rows, w.n_rows + 1));
    }
    let half = w.n_rows / 2;
    if x.rows != 1 || w.parts.len() != 1 {
        let gu = linear(b, x, w, None)?;
        let parts = split_cols(b, &gu, &[half, half])?;
        return glu(b, &parts[0], &parts[1], gelu);
    }
    if x.cols != w.n_cols {
        return Err(shape_err("linear_glu", x.cols, w.n_cols));
    }
    let out = b.alloc(1, half)?;
    let xq = if b.q8_acts && has_dot_q8(w.ty) && w.n_cols % 32 == 0 { Some(b.q8_of(x)?) } else { None };
    let p = LinearParams {
        n_rows: half as u32,
        k: w.n_cols as u32,
        n_tok: 1,
        row_off: 0,
        out_stride: half as u32,
        row_bytes: w.row_bytes as u32,
        ..Default::default()
    };
    let binds = [(0, Bind::Buf(&w.parts[0].buf)), (1, Bind::Act(xq.as_deref().unwrap_or(x))), (3, Bind::Act(&out))];
    let (key, groups) = decode_key(b, linear_glu_key(w.ty, w.n_cols % 4 == 0, xq.is_some(), gelu), half)?;
    b.dispatch_rows(key, &p, &binds, 4, groups, w.n_rows)?;
    b.q8_keep(x);
    Ok(out)
}

/// `x @ w^T (+ bias)`; one dispatch per row part of `w`.
pub fn linear(b: &mut GpuBackend, x: &GpuAct, w: &GpuWeight, bias: Option<&GpuWeight>) -> Result<GpuAct> {
    let out = b.alloc(x.rows, w.n_rows)?;
    linear_into(b, x, w, bias, &[&out])?;
    Ok(out)
}

/// `x @ w^T` with the output columns split into pieces of `widths` (q, k and v of one joined
/// weight): one dispatch per row part of `w`, each writing every piece's rows to its own
/// buffer. More than 3 pieces: the product, then `split_cols`.
pub fn linear_split(b: &mut GpuBackend, x: &GpuAct, w: &GpuWeight, widths: &[usize]) -> Result<Vec<GpuAct>> {
    if widths.iter().sum::<usize>() != w.n_rows {
        return Err(shape_err("linear_split", widths.iter().sum(), w.n_rows));
    }
    if !(2..=3).contains(&widths.len()) {
        let y = linear(b, x, w, None)?;
        return split_cols(b, &y, widths);
    }
    let outs = widths.iter().map(|&n| b.alloc(x.rows, n)).collect::<Result<Vec<_>>>()?;
    linear_into(b, x, w, None, &outs.iter().collect::<Vec<_>>())?;
    Ok(outs)
}

/// The product into `outs`: one output of `w.n_rows` columns, or 2-3 whose widths add up to it.
fn linear_into(b: &mut GpuBackend, x: &GpuAct, w: &GpuWeight, bias: Option<&GpuWeight>, outs: &[&GpuAct]) -> Result<()> {
    if x.cols != w.n_cols {
        return Err(shape_err("linear", x.cols, w.n_cols));
    }
    if let Some(bw) = bias {
        if bw.f32_len()? != w.n_rows {
            return Err(shape_err("bias", bw.f32_len()?, w.n_rows));
        }
    }
    let split = outs.len() > 1;
    let split1 = outs[0].cols;
    let split2 = if outs.len() == 3 { split1 + outs[1].cols } else { w.n_rows };
    let tile = if x.rows == 1 { 1 } else { TILE_PREFILL };
    // Decode of a `has_dot_q8` format: activations quantized once, shared by every row part.
    let xq = if tile == 1 && b.q8_acts && has_dot_q8(w.ty) && w.n_cols % 32 == 0 { Some(b.q8_of(x)?) } else { None };
    let tiles = x.rows.div_ceil(tile as usize);
    if tiles > 65535 {
        return Err(Error::invalid_argument(format!("batch of {} tokens is too large for one GPU matrix product", x.rows)));
    }
    for part in &w.parts {
        let p = LinearParams {
            n_rows: part.n_rows as u32,
            k: w.n_cols as u32,
            n_tok: x.rows as u32,
            row_off: part.row0 as u32,
            out_stride: w.n_rows as u32,
            row_bytes: w.row_bytes as u32,
            split1: split1 as u32,
            split2: split2 as u32,
        };
        let mut binds = vec![(0, Bind::Buf(&part.buf)), (1, Bind::Act(xq.as_deref().unwrap_or(x))), (3, Bind::Act(outs[0]))];
        if let Some(bw) = bias {
            binds.push((2, Bind::Buf(&bw.parts[0].buf)));
        }
        for (i, o) in outs.iter().enumerate().skip(1) {
            binds.push((4 + i as u32, Bind::Act(o)));
        }
        let key = if split {
            linear_split_key(w.ty, tile, w.n_cols % 4 == 0, xq.is_some(), outs.len())
        } else {
            linear_key(w.ty, tile, bias.is_some(), w.n_cols % 4 == 0, xq.is_some())
        };
        let (key, groups) = if tile == 1 { decode_key(b, key, part.n_rows)? } else { (key, (per_row_groups(part.n_rows)?, tiles as u32, 1)) };
        b.dispatch_rows(key, &p, &binds, 4, groups, part.n_rows)?;
    }
    b.q8_keep(x);
    Ok(())
}

/// Activation rows (`cols % 32 == 0`) to Q8 blocks: per 32 values an f32 scale (f16-rounded)
/// and 8 words of packed i8, as the CPU's `quantize_acts` for Q8_0 (`[rows, cols / 32 * 9]` words).
pub fn quantize_q8(b: &mut GpuBackend, x: &GpuAct) -> Result<GpuAct> {
    if x.cols % 32 != 0 {
        return Err(shape_err("quantize_q8", x.cols, x.cols.next_multiple_of(32)));
    }
    let n_blocks = x.len() / 32;
    let out = b.alloc(x.rows, x.cols / 32 * 9)?;
    let p = LenParams { n: n_blocks as u32, ..Default::default() };
    b.dispatch(simple_key("quantize_q8"), &p, &[(0, Bind::Act(x)), (3, Bind::Act(&out))], 4, grid(n_blocks, WG))?;
    Ok(out)
}

/// Consecutive column pieces of the given widths.
pub fn split_cols(b: &mut GpuBackend, x: &GpuAct, widths: &[usize]) -> Result<Vec<GpuAct>> {
    if widths.iter().sum::<usize>() != x.cols {
        return Err(shape_err("split_cols", widths.iter().sum(), x.cols));
    }
    let mut outs = Vec::new();
    let mut off = 0;
    for &w in widths {
        let out = b.alloc(x.rows, w)?;
        let p = SplitColsParams { n_rows: x.rows as u32, in_cols: x.cols as u32, out_cols: w as u32, col_off: off as u32 };
        b.dispatch(simple_key("split_cols"), &p, &[(0, Bind::Act(x)), (3, Bind::Act(&out))], 4, grid(x.rows * w, WG))?;
        outs.push(out);
        off += w;
    }
    Ok(outs)
}

/// `cap * tanh(x / cap)`, in place.
pub fn softcap(b: &mut GpuBackend, x: &mut GpuAct, cap: f32) -> Result<()> {
    let p = ScalarParams { n: x.len() as u32, s: cap, ..Default::default() };
    b.dispatch(simple_key("softcap"), &p, &[(3, Bind::Act(x))], 4, grid(x.len(), WG))
}

/// `act(gate) * up`.
pub fn glu(b: &mut GpuBackend, gate: &GpuAct, up: &GpuAct, gelu: bool) -> Result<GpuAct> {
    if gate.len() != up.len() {
        return Err(shape_err("glu", gate.cols, up.cols));
    }
    let out = b.alloc(gate.rows, gate.cols)?;
    let p = LenParams { n: gate.len() as u32, ..Default::default() };
    b.dispatch(glu_key(gelu), &p, &[(0, Bind::Act(gate)), (1, Bind::Act(up)), (3, Bind::Act(&out))], 4, grid(gate.len(), WG))?;
    Ok(out)
}

/// The checks every attention op shares, and its uniform parameters.
fn attn_params(kv: &GpuKv, n: usize, p: &AttnParams) -> Result<AttentionParams> {
    if p.pos0 + n > kv.n_ctx {
        return Err(Error::new(
            crate::ErrorCode::ContextOverflow,
            format!("position {} exceeds the context length {}", p.pos0 + n, kv.n_ctx),
        ));
    }
    if p.head_dim % 2 != 0 || p.head_dim_v % 2 != 0 || kv.k_dim % 2 != 0 || kv.v_dim % 2 != 0 || p.n_head_kv == 0 || p.n_head % p.n_head_kv != 0 || p.layer >= kv.k.len() {
        return Err(Error::unsupported_model(format!("attention head size {} is not supported on the GPU", p.head_dim)));
    }
    if kv.ty == KvType::Q8_0 && (p.head_dim % KV_BLOCK != 0 || p.head_dim_v % KV_BLOCK != 0 || p.head_dim > MAX_Q8_HEAD_DIM as usize) {
        return Err(Error::unsupported_model(format!("a q8_0 KV cache on the GPU needs heads of whole 32-value blocks up to {MAX_Q8_HEAD_DIM}; this one is {}", p.head_dim)));
    }
    let last = p.pos0 + n;
    let score_stride = p.window.map_or(last, |w| w.min(last));
    Ok(AttentionParams {
        n_rows: n as u32,
        n_head: p.n_head as u32,
        group: (p.n_head / p.n_head_kv) as u32,
        head_dim: p.head_dim as u32,
        head_dim_v: p.head_dim_v as u32,
        k_dim: kv.k_dim as u32,
        v_dim: kv.v_dim as u32,
        pos0: p.pos0 as u32,
        window: p.window.unwrap_or(0) as u32,
        score_stride: score_stride as u32,
        scale: p.scale,
        n_chunks: score_stride.div_ceil(PV_CHUNK as usize) as u32,
    })
}

/// Attention of q over the cache (`attention.wgsl`): `attend`, one workgroup per (row, head,
/// chunk of [`PV_CHUNK`] positions) with the chunk's scores, softmax and values; past one chunk,
/// `reduce` weighs the chunks together. One dispatch, or two, however long the context.
pub fn attend(b: &mut GpuBackend, kv: &GpuKv, q: &GpuAct, p: AttnParams) -> Result<GpuAct> {
    let n = q.rows;
    let u = attn_params(kv, n, &p)?;
    if q.cols != p.n_head * p.head_dim {
        return Err(shape_err("attention", q.cols, p.n_head * p.head_dim));
    }
    let n_chunks = u.n_chunks as usize;
    let (kc, vc) = (&kv.k[p.layer], &kv.v[p.layer]);
    let (f16, q8) = (b.ctx.has_f16(), kv.ty == KvType::Q8_0);
    let out = b.alloc(n, p.n_head * p.head_dim_v)?;
    let groups = grid(n * p.n_head * n_chunks, 1);
    if n_chunks == 1 {
        let unused = b.alloc(1, 2)?;
        let binds = [(0, Bind::Act(q)), (3, Bind::Buf(kc)), (4, Bind::Buf(vc)), (5, Bind::Act(&unused)), (6, Bind::Act(&out))];
        b.dispatch(attention_key("attend", f16, q8), &u, &binds, 7, groups)?;
    } else {
        let partial = b.alloc(n * p.n_head * n_chunks, p.head_dim_v)?;
        let stats = b.alloc(n * p.n_head * n_chunks, 2)?;
        let binds = [(0, Bind::Act(q)), (3, Bind::Buf(kc)), (4, Bind::Buf(vc)), (5, Bind::Act(&stats)), (6, Bind::Act(&partial))];
        b.dispatch(attention_key("attend", f16, q8), &u, &binds, 7, groups)?;
        let binds = [(5, Bind::Act(&stats)), (8, Bind::Act(&partial)), (6, Bind::Act(&out))];
        b.dispatch(attention_key("reduce", f16, q8), &u, &binds, 7, grid(out.len(), WG))?;
    }
    Ok(out)
}

/// Per-head norms, rotary embedding and `q_scale` of q and k, then k and v stored: one dispatch
/// (`qk_prep.wgsl`). Returns q (rewritten in place).
pub fn qk_prep(b: &mut GpuBackend, kv: &mut GpuKv, q: GpuAct, k: GpuAct, v: &GpuAct, prep: QkPrep<'_, GpuWeight>, p: AttnParams) -> Result<GpuAct> {
    let n = q.rows;
    attn_params(kv, n, &p)?;
    let r = prep.rope;
    if q.cols != p.n_head * p.head_dim || k.cols != kv.k_dim || v.cols != kv.v_dim || k.rows != n || v.rows != n
        || kv.k_dim != p.n_head_kv * p.head_dim || kv.v_dim != p.n_head_kv * p.head_dim_v
        || r.head_dim != p.head_dim || r.n_rot > p.head_dim || r.n_rot % 2 != 0
    {
        return Err(shape_err("qk_prep", q.cols, p.n_head * p.head_dim));
    }
    for w in [prep.q_norm, prep.k_norm].into_iter().flatten() {
        if w.f32_len()? != p.head_dim {
            return Err(shape_err("qk_prep norm", w.f32_len()?, p.head_dim));
        }
    }
    check_freq_factors(prep.freq_factors, r.n_rot)?;
    let u = QkPrepParams {
        n_rows: n as u32,
        n_head: p.n_head as u32,
        n_head_kv: p.n_head_kv as u32,
        head_dim: p.head_dim as u32,
        head_dim_v: p.head_dim_v as u32,
        n_rot: r.n_rot as u32,
        pos0: r.pos0 as u32,
        theta_scale: crate::backend::rope_theta_scale(r.base, r.n_rot),
        freq_scale: r.freq_scale,
        eps: prep.eps,
        q_scale: prep.q_scale.unwrap_or(1.0),
        _pad: 0,
    };
    let (kc, vc) = (&kv.k[p.layer], &kv.v[p.layer]);
    let mut binds = vec![(0, Bind::Act(&q)), (1, Bind::Act(&k)), (2, Bind::Act(v)), (3, Bind::Buf(kc)), (4, Bind::Buf(vc))];
    if let Some(w) = prep.q_norm {
        binds.push((6, Bind::Buf(&w.parts[0].buf)));
    }
    if let Some(w) = prep.k_norm {
        binds.push((7, Bind::Buf(&w.parts[0].buf)));
    }
    if let Some(f) = prep.freq_factors {
        binds.push((8, Bind::Buf(&f.parts[0].buf)));
    }
    let key = qk_prep_key(r.neox, prep.freq_factors.is_some(), prep.q_norm.is_some(), prep.k_norm.is_some(), prep.q_scale.is_some(), kv.ty == KvType::Q8_0);
    b.dispatch(key, &u, &binds, 5, grid(n * (p.n_head + p.n_head_kv), 1))?;
    Ok(q)
}

/// RoPE frequency factors, where the model has them, cover the `n_rot / 2` rotated pairs.
fn check_freq_factors(f: Option<&GpuWeight>, n_rot: usize) -> Result<()> {
    match f {
        Some(f) if f.f32_len()? < n_rot / 2 => Err(shape_err("rope freq factors", f.f32_len()?, n_rot / 2)),
        _ => Ok(()),
    }
}

/// `m` key rows of `k_dim` values in `src` (a copy of a layer's moved rows in the cache's layout
/// of type `ty`) turned by `delta` positions into rows `dst0..dst0 + m` of the key cache `kc`
/// (`shaders/rope_shift.wgsl`).
#[allow(clippy::too_many_arguments)]
pub fn rope_shift(b: &mut GpuBackend, kc: &wgpu::Buffer, src: &GpuAct, m: usize, k_dim: usize, dst0: usize, delta: i64, r: RopeParams, freq_factors: Option<&GpuWeight>, ty: KvType) -> Result<()> {
    check_freq_factors(freq_factors, r.n_rot)?;
    let q8 = ty == KvType::Q8_0;
    if r.head_dim == 0 || k_dim % r.head_dim != 0 || ((src.len() * 4) as u64) < m as u64 * super::kv_row_bytes(ty, k_dim) || (q8 && r.head_dim % KV_BLOCK != 0) {
        return Err(shape_err("rope_shift", k_dim, r.head_dim));
    }
    let n_head_kv = k_dim / r.head_dim;
    let u = RopeShiftParams {
        n_rows: m as u32,
        n_head_kv: n_head_kv as u32,
        head_dim: r.head_dim as u32,
        n_rot: r.n_rot as u32,
        dst0: dst0 as u32,
        delta: delta as i32,
        theta_scale: crate::backend::rope_theta_scale(r.base, r.n_rot),
        freq_scale: r.freq_scale,
    };
    let mut binds = vec![(0, Bind::Act(src)), (3, Bind::Buf(kc))];
    if let Some(f) = freq_factors {
        binds.push((8, Bind::Buf(&f.parts[0].buf)));
    }
    b.dispatch(rope_shift_key(r.neox, freq_factors.is_some(), q8), &u, &binds, 4, grid(m * n_head_kv, WG))
}

/// Index and value of the largest element of a one-row `x` into `out` (2 words).
pub fn argmax(b: &mut GpuBackend, x: &GpuAct, out: &GpuAct) -> Result<()> {
    if out.len() != 2 * x.rows {
        return Err(Error::internal(format!("argmax of {} rows into {} words", x.rows, out.len())));
    }
    let p = LenParams { n: x.cols as u32, ..Default::default() };
    b.dispatch(argmax_key(), &p, &[(0, Bind::Act(x)), (3, Bind::Act(out))], 4, (x.rows as u32, 1, 1))
}

/// The `k` largest elements of a one-row `x` with their indices into `out` (`2k` words).
pub fn top_k(b: &mut GpuBackend, x: &GpuAct, k: usize, out: &GpuAct) -> Result<()> {
    if k == 0 || k > MAX_TOP_K {
        return Err(Error::invalid_argument(format!("top-k on the GPU needs 1 <= k <= {MAX_TOP_K}, got {k}")));
    }
    let n_chunks = x.len().div_ceil(TOPK_CHUNK as usize);
    let cand = b.alloc(1, n_chunks * k * 2)?;
    let p1 = TopKParams { n: x.len() as u32, k: k as u32, ..Default::default() };
    b.dispatch(top_k_key("chunks"), &p1, &[(0, Bind::Act(x)), (2, Bind::Act(&cand))], 4, (n_chunks as u32, 1, 1))?;
    let p2 = TopKParams { n: (n_chunks * k) as u32, k: k as u32, ..Default::default() };
    b.dispatch(top_k_key("merge"), &p2, &[(2, Bind::Act(&cand)), (3, Bind::Act(out))], 4, (1, 1, 1))
}
