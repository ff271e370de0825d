// linear: out[t, row_off + r] = sum_k w[r, k] * x[t, k] (+ bias[row_off + r]).
// Matrix-vector (TILE = 1, decode) and matrix-matrix (TILE > 1, prefill: each decoded weight
// value is used for TILE tokens). One invocation per weight row: the fastest layout on the
// software GPUs we test on; weights are raw GGUF blocks decoded by `dq4` (common/dequant.wgsl).
// A weight larger than one storage binding is split by rows; one dispatch per part.

struct Params {
    n_rows: u32,     // rows of this weight part
    k: u32,          // columns (shared dimension)
    n_tok: u32,      // rows of x
    row_off: u32,    // first output column of this part
    out_stride: u32, // output columns (all parts)
    row_bytes: u32,  // bytes of one weight row
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> wq: array<u32>;          // [n_rows, row_bytes] GGUF blocks
#ifdef X_VEC4
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;     // [n_tok, k / 4] (k % 4 == 0)
fn xv(i: u32) -> vec4<f32> {
    return x[i >> 2u];
}
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [n_tok, k]
fn xv(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}
#endif
#ifdef BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;        // [out_stride]
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [n_tok, out_stride]
@group(0) @binding(4) var<uniform> p: Params;

#include "common/dequant.wgsl"
#include "common/grid.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = wid.x * WG + lid.x;
    let t0 = wid.y * TILE;
    if (r >= p.n_rows) {
        return;
    }
    let rowb = r * p.row_bytes;
    // Constant trip counts over the tile (rows past the batch re-read the last row and are not
    // written), so the accumulators stay in registers.
    var xr: array<u32, TILE>;
    for (var t = 0u; t < TILE; t++) {
        xr[t] = min(t0 + t, p.n_tok - 1u) * p.k;
    }
    var acc: array<f32, TILE>;
#ifdef DOT_BLK
    // Whole blocks at a time (decode, TILE = 1, formats with a `dot_blk` helper).
    for (var bi = 0u; bi < p.k / DOT_BLK_BS; bi++) {
        acc[0] += dot_blk(rowb + bi * DOT_BLK_TS, xr[0] + bi * DOT_BLK_BS);
    }
#else
    let k4 = p.k & ~3u;
    for (var e = 0u; e < k4; e += 4u) {
        let w = dq4(rowb, e);
        for (var t = 0u; t < TILE; t++) {
            acc[t] += dot(w, xv(xr[t] + e));
        }
    }
#ifndef X_VEC4
    for (var e = k4; e < p.k; e++) {
        let w = dq1(rowb, e);
        for (var t = 0u; t < TILE; t++) {
            acc[t] += w * x[xr[t] + e];
        }
    }
#endif
#endif
    for (var t = 0u; t < TILE; t++) {
        var y = acc[t];
#ifdef BIAS
        y += bias[p.row_off + r];
#endif
        if (t0 + t < p.n_tok) {
            out[(t0 + t) * p.out_stride + p.row_off + r] = y;
        }
    }
}
