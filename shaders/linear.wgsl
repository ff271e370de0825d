// linear: out[t, row_off + r] = sum_k w[r, k] * x[t, k] (+ bias[row_off + r]).
// Matrix-vector (decode) and matrix-matrix (TILE8, prefill: each decoded weight value is used
// for 8 tokens); weights are raw GGUF blocks decoded by `dq4` (common/dequant.wgsl).
// Two layouts of the decode product (GpuLayout in context.rs):
// - per row (default): one invocation per weight row, walking it whole: the fastest layout on
//   the CPU-emulated GPUs (lavapipe, SwiftShader), where an invocation is a lane of a CPU thread;
// - COOP (hardware GPUs): ROWS rows per workgroup of WG invocations, LANES = WG / ROWS lanes per
//   row; lane l takes the row's groups of 4 elements l, l + LANES, ... (XQ8: the format's block
//   parts, `dot_q8_part`), so the lanes of a row read consecutive words (coalesced) and a
//   640-row product launches 20,480 invocations instead of 640. The lanes' sums add up per row
//   by `subgroupAdd` (SUBGROUPS: the host enables it only where no subgroup is wider than
//   LANES, so a subgroup never spans two rows) or a tree in workgroup memory. Dead rows of the
//   last workgroup keep a `live` flag instead of returning, so every barrier stays uniform.
// A weight larger than one storage binding is split by rows; one dispatch per part.
// With GLU (decode only): the weight holds a gated FFN's gate rows then its up rows (n_rows
// each), and out[r] = act(gate_r . x) * (up_r . x) (common/act.wgsl): the FFN's first half in
// one dispatch.
// With SPLIT (SPLIT3): the weight holds two (three) weights' rows, q then k (then v), and each
// one's outputs go to its own buffer: rows before split1 to out, then to out1 (before split2),
// then to out2. out_stride is then the rows of the whole weight.

struct Params {
    n_rows: u32,     // rows of this weight part
    k: u32,          // columns (shared dimension)
    n_tok: u32,      // rows of x
    row_off: u32,    // first output column of this part
    out_stride: u32, // output columns (all parts)
    row_bytes: u32,  // bytes of one weight row
    split1: u32,     // SPLIT: first row of the second output
    split2: u32,     // SPLIT3: first row of the third output (else out_stride)
}

@group(0) @binding(0) var<storage, read> wq: array<u32>;          // [n_rows, row_bytes] GGUF blocks
#ifdef XQ8
// Decode with Q8 activations (quantize_q8.wgsl): 9 words per block of 32.
@group(0) @binding(1) var<storage, read> xq: array<u32>;          // [n_tok, k / 32 * 9]
#else
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
#endif
#ifdef BIAS
@group(0) @binding(2) var<storage, read> bias: array<f32>;        // [out_stride]
#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [n_tok, out_stride] (SPLIT: [n_tok, split1])
@group(0) @binding(4) var<uniform> p: Params;
#ifdef SPLIT
@group(0) @binding(5) var<storage, read_write> out1: array<f32>;  // [n_tok, split2 - split1]
#endif
#ifdef SPLIT3
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;  // [n_tok, out_stride - split2]
#endif

#include "common/dequant.wgsl"
#include "common/grid.wgsl"
#ifdef GLU
#include "common/act.wgsl"
#endif

#ifndef COOP
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
#ifdef TRACE
    trace_begin(wid.x + wid.y, lid.x);
#endif
    let r = wid.x * WG + lid.x;
#ifdef TILE8
    let t0 = wid.y * 8u;
#else
    let t0 = wid.y;
#endif
    if (r >= p.n_rows) {
        return;
    }
    let rowb = r * p.row_bytes;
#ifdef TILE8
    // Prefill: 8 tokens per invocation in named scalars (a private array indexed in a loop is
    // spilled to memory by CPU-based Vulkan drivers); rows past the batch re-read the last row
    // and are not written.
    let last = p.n_tok - 1u;
    let x0 = min(t0, last) * p.k;
    let x1 = min(t0 + 1u, last) * p.k;
    let x2 = min(t0 + 2u, last) * p.k;
    let x3 = min(t0 + 3u, last) * p.k;
    let x4 = min(t0 + 4u, last) * p.k;
    let x5 = min(t0 + 5u, last) * p.k;
    let x6 = min(t0 + 6u, last) * p.k;
    let x7 = min(t0 + 7u, last) * p.k;
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    var a4 = 0.0;
    var a5 = 0.0;
    var a6 = 0.0;
    var a7 = 0.0;
    for (var e = 0u; e < (p.k & ~3u); e += 4u) {
        let w = dq4(rowb, e);
        a0 += dot(w, xv(x0 + e));
        a1 += dot(w, xv(x1 + e));
        a2 += dot(w, xv(x2 + e));
        a3 += dot(w, xv(x3 + e));
        a4 += dot(w, xv(x4 + e));
        a5 += dot(w, xv(x5 + e));
        a6 += dot(w, xv(x6 + e));
        a7 += dot(w, xv(x7 + e));
    }
#ifndef X_VEC4
    for (var e = p.k & ~3u; e < p.k; e++) {
        let w = dq1(rowb, e);
        a0 += w * x[x0 + e];
        a1 += w * x[x1 + e];
        a2 += w * x[x2 + e];
        a3 += w * x[x3 + e];
        a4 += w * x[x4 + e];
        a5 += w * x[x5 + e];
        a6 += w * x[x6 + e];
        a7 += w * x[x7 + e];
    }
#endif
    store(t0, r, a0);
    store(t0 + 1u, r, a1);
    store(t0 + 2u, r, a2);
    store(t0 + 3u, r, a3);
    store(t0 + 4u, r, a4);
    store(t0 + 5u, r, a5);
    store(t0 + 6u, r, a6);
    store(t0 + 7u, r, a7);
#else
    // Decode: one token.
#ifdef GLU
    store(t0, r, act(row_dot(rowb, t0)) * row_dot(rowb + p.n_rows * p.row_bytes, t0));
#else
    store(t0, r, row_dot(rowb, t0));
#endif
#endif
}
#else
const LANES: u32 = WG / ROWS;
// Each lane's partial sums (.x: the product, or GLU's gate; .y: GLU's up), then the per-row
// (SUBGROUPS: per-subgroup) totals.
var<workgroup> red: array<vec2<f32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32
#ifdef SUBGROUPS
        , @builtin(subgroup_size) sg: u32
#endif
        ) {
    let wg = flat_wg(wid, nwg);
#ifdef TRACE
    trace_begin(wg, lid);
#endif
    let r = wg * ROWS + lid / LANES;
    let lane = lid % LANES;
    let live = r < p.n_rows;
    let rowb = r * p.row_bytes;
#ifdef GLU
    let upb = rowb + p.n_rows * p.row_bytes;
#endif
    var acc = vec2<f32>(0.0);
    // Loop bounds are uniform (from Params) so the barriers below are too; each lane skips
    // the units past its row's end.
#ifdef XQ8
    let n_units = p.k / XQ8_BS * XQ8_PARTS;
    for (var i = 0u; i < n_units; i += LANES) {
        let u = i + lane;
        if (live && u < n_units) {
            let bi = u / XQ8_PARTS;
            let j = u % XQ8_PARTS;
            acc.x += dot_q8_part(rowb + bi * XQ8_TS, bi * 9u, j);
#ifdef GLU
            acc.y += dot_q8_part(upb + bi * XQ8_TS, bi * 9u, j);
#endif
        }
    }
#else
    let n4 = p.k / 4u;
    for (var i = 0u; i < n4; i += LANES) {
        let g = i + lane;
        if (live && g < n4) {
            let xg = xv(4u * g);
            acc.x += dot(dq4(rowb, 4u * g), xg);
#ifdef GLU
            acc.y += dot(dq4(upb, 4u * g), xg);
#endif
        }
    }
#ifndef X_VEC4
    // k % 4 != 0 (float formats only): the last elements, one per lane.
    let e = n4 * 4u + lane;
    if (live && e < p.k) {
        acc.x += dq1(rowb, e) * x[e];
#ifdef GLU
        acc.y += dq1(upb, e) * x[e];
#endif
    }
#endif
#endif
#ifdef SUBGROUPS
    // Subgroups hold consecutive invocations and none is wider than a row's LANES: each
    // subgroup's total is one piece of a row, written by its first lane.
    let part = subgroupAdd(acc);
    if (lid % sg == 0u) {
        red[lid / sg] = part;
    }
    workgroupBarrier();
    if (live && lane == 0u) {
        let per = LANES / sg;
        var tot = vec2<f32>(0.0);
        for (var s = 0u; s < per; s++) {
            tot += red[lid / sg + s];
        }
        coop_store(r, tot);
    }
#else
    red[lid] = acc;
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (lane < s) {
            red[lid] += red[lid + s];
        }
    }
    if (live && lane == 0u) {
        coop_store(r, red[lid]);
    }
#endif
}

fn coop_store(r: u32, tot: vec2<f32>) {
#ifdef GLU
    store(0u, r, act(tot.x) * tot.y);
#else
    store(0u, r, tot.x);
#endif
}
#endif

// Decode: the dot product of the weight row at byte `rowb` with token t's activations.
fn row_dot(rowb: u32, t: u32) -> f32 {
    var a0 = 0.0;
#ifdef XQ8
    // Integer dot products of whole blocks (formats with a `dot_q8` helper).
    let nb = p.k / XQ8_BS;
    let xb0 = t * nb * 9u;
    for (var bi = 0u; bi < nb; bi++) {
        a0 += dot_q8(rowb + bi * XQ8_TS, xb0 + bi * 9u);
    }
#else
    let x0 = t * p.k;
#ifdef DOT_BLK
    // Whole blocks at a time (formats with a `dot_blk` helper).
    for (var bi = 0u; bi < p.k / DOT_BLK_BS; bi++) {
        a0 += dot_blk(rowb + bi * DOT_BLK_TS, x0 + bi * DOT_BLK_BS);
    }
#else
    for (var e = 0u; e < (p.k & ~3u); e += 4u) {
        a0 += dot(dq4(rowb, e), xv(x0 + e));
    }
#ifndef X_VEC4
    for (var e = p.k & ~3u; e < p.k; e++) {
        a0 += dq1(rowb, e) * x[x0 + e];
    }
#endif
#endif
#endif
    return a0;
}

fn store(t: u32, r: u32, v: f32) {
    if (t < p.n_tok) {
        var y = v;
#ifdef BIAS
        y += bias[p.row_off + r];
#endif
#ifdef SPLIT
        let g = p.row_off + r;
        if (g < p.split1) {
            out[t * p.split1 + g] = y;
        } else if (g < p.split2) {
            out1[t * (p.split2 - p.split1) + g - p.split1] = y;
        }
#ifdef SPLIT3
        else {
            out2[t * (p.out_stride - p.split2) + g - p.split2] = y;
        }
#endif
#else
        out[t * p.out_stride + p.row_off + r] = y;
#endif
    }
}
