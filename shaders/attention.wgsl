#ifdef F16
enable f16;
#endif
// attention over the KV cache (causal, GQA/MQA, optional sliding window), two entry points:
//   store_kv: round the new keys/values to f16 and write them at positions pos0.. of the cache
//             (two f16 per u32, as llama.cpp's default f16 cache stores them);
//   main:     one workgroup per (query head, query row): scores = scale * q.k with q rounded to
//             f16, softmax, probabilities rounded to f16, then the weighted sum of values.
// The numerics follow the CPU reference (backend::cpu::ops::attend_head).
// F16 (adapters with `shader-f16`): the cache is bound as `vec2<f16>` and read as f16 values
// instead of unpacking u32 pairs; the bytes and the results are the same.

struct Params {
    n_rows: u32,      // query rows (tokens of the batch)
    n_head: u32,
    group: u32,       // query heads per kv head
    head_dim: u32,
    head_dim_v: u32,
    k_dim: u32,       // cache row width of K (elements, even)
    v_dim: u32,       // cache row width of V (elements, even)
    pos0: u32,
    window: u32,      // 0: no window
    score_stride: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;              // [n_rows, n_head * head_dim]
@group(0) @binding(1) var<storage, read> k_new: array<f32>;          // [n_rows, k_dim]
@group(0) @binding(2) var<storage, read> v_new: array<f32>;          // [n_rows, v_dim]
#ifdef F16
@group(0) @binding(3) var<storage, read_write> kc: array<vec2<f16>>; // [n_ctx, k_dim / 2] f16 pairs
@group(0) @binding(4) var<storage, read_write> vc: array<vec2<f16>>; // [n_ctx, v_dim / 2] f16 pairs
fn kv_pair(v: vec2<f16>) -> vec2<f32> {
    return vec2<f32>(v);
}
fn kv_store(a: f32, b: f32) -> vec2<f16> {
    // Round to nearest even as the u32 path does; the conversion back to f16 is then exact.
    return vec2<f16>(unpack2x16float(pack_f16x2(a, b)));
}
#else
@group(0) @binding(3) var<storage, read_write> kc: array<u32>;       // [n_ctx, k_dim / 2] f16 pairs
@group(0) @binding(4) var<storage, read_write> vc: array<u32>;       // [n_ctx, v_dim / 2] f16 pairs
fn kv_pair(v: u32) -> vec2<f32> {
    return unpack2x16float(v);
}
fn kv_store(a: f32, b: f32) -> u32 {
    return pack_f16x2(a, b);
}
#endif
@group(0) @binding(5) var<storage, read_write> scores: array<f32>;   // [n_rows * n_head, score_stride]
@group(0) @binding(6) var<storage, read_write> out: array<f32>;      // [n_rows, n_head * head_dim_v]
@group(0) @binding(7) var<uniform> p: Params;

#include "common/grid.wgsl"
#include "common/f16.wgsl"

@compute @workgroup_size(WG)
fn store_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_wg(wid, nwg) * WG + lid.x;
    let kw = p.k_dim / 2u;
    let vw = p.v_dim / 2u;
    let per_row = kw + vw;
    if (g >= p.n_rows * per_row) {
        return;
    }
    let r = g / per_row;
    let i = g % per_row;
    let pos = p.pos0 + r;
    if (i < kw) {
        kc[pos * kw + i] = kv_store(k_new[r * p.k_dim + 2u * i], k_new[r * p.k_dim + 2u * i + 1u]);
    } else {
        let j = i - kw;
        vc[pos * vw + j] = kv_store(v_new[r * p.v_dim + 2u * j], v_new[r * p.v_dim + 2u * j + 1u]);
    }
}

var<workgroup> qs: array<f32, HD>;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.x;
    let r = wid.y;
    let pos = p.pos0 + r;
    var start = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        start = pos + 1u - p.window;
    }
    let n_pos = pos + 1u - start;
    let g = h / p.group;
    let q_base = (r * p.n_head + h) * p.head_dim;
    for (var d = lid.x; d < p.head_dim; d += WG) {
        qs[d] = round_f16(q[q_base + d]);
    }
    workgroupBarrier();

    // Scores and their maximum.
    let kw = p.k_dim / 2u;
    let k_off = g * p.head_dim / 2u;
    let s_base = (r * p.n_head + h) * p.score_stride;
    var mx = -3.0e38;
    for (var j = lid.x; j < n_pos; j += WG) {
        let kb = (start + j) * kw + k_off;
        var s = 0.0;
        for (var d = 0u; d < p.head_dim / 2u; d++) {
            let kk = kv_pair(kc[kb + d]);
            s += qs[2u * d] * kk.x;
            s += qs[2u * d + 1u] * kk.y;
        }
        s *= p.scale;
        scores[s_base + j] = s;
        mx = max(mx, s);
    }
    red[lid.x] = mx;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid.x < w) {
            red[lid.x] = max(red[lid.x], red[lid.x + w]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();

    // exp and the denominator.
    var sum = 0.0;
    for (var j = lid.x; j < n_pos; j += WG) {
        let e = exp(scores[s_base + j] - m);
        scores[s_base + j] = e;
        sum += e;
    }
    red[lid.x] = sum;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid.x < w) {
            red[lid.x] += red[lid.x + w];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    storageBarrier();
    workgroupBarrier();

    // Weighted sum of values, one output element per invocation.
    let vw = p.v_dim / 2u;
    let out_base = (r * p.n_head + h) * p.head_dim_v;
    for (var d = lid.x; d < p.head_dim_v; d += WG) {
        let e = g * p.head_dim_v + d;
        var acc = 0.0;
        for (var j = 0u; j < n_pos; j++) {
            let pj = round_f16(scores[s_base + j] * inv);
            let vv = kv_pair(vc[(start + j) * vw + e / 2u]);
            acc += pj * select(vv.x, vv.y, (e & 1u) == 1u);
        }
        out[out_base + d] = acc;
    }
}
