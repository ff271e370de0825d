#ifdef F16
enable f16;
#endif
// attention over the KV cache (causal, GQA/MQA, optional sliding window), split over positions
// so one token's attention spreads over the whole GPU (split-K, as flash-decoding):
//   store_kv:  round the new keys/values to f16 and write them at positions pos0.. of the cache
//              (two f16 per u32, as llama.cpp's default f16 cache stores them);
//   qk:        one invocation per (query row, head, position): scale * q.k with q rounded to f16
//              (positions outside the row's causal/window range get MASKED);
//   (softmax.wgsl normalizes each score row in place; masked entries become 0);
//   pv:        one invocation per (query row, head, chunk of PV_CHUNK positions, pair of output
//              values): the chunk's probabilities, rounded to f16, times the values;
//   pv_reduce: with more than one chunk, the chunk partials summed in chunk order.
// The numerics follow the CPU reference (backend::cpu::ops::attend_head) up to the order of the
// f32 sums over positions.
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
    n_chunks: u32,    // pv: chunks of PV_CHUNK positions per score row
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
// pv: [n_rows * n_head * n_chunks, head_dim_v] partials, or (one chunk) the result;
// pv_reduce: the result, [n_rows, n_head * head_dim_v] (the same layout as [n_rows * n_head, head_dim_v]).
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;
@group(0) @binding(8) var<storage, read> partial: array<f32>;        // pv_reduce: pv's partials

// Written by `scores` where a position is outside the row's range; softmax.wgsl maps it to 0.
const MASKED: f32 = -3.0e38;

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

// First cached position and number of positions attended by query row `r`.
fn row_range(r: u32) -> vec2<u32> {
    let pos = p.pos0 + r;
    var start = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        start = pos + 1u - p.window;
    }
    return vec2<u32>(start, pos + 1u - start);
}

@compute @workgroup_size(WG)
fn qk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_wg(wid, nwg) * WG + lid.x;
    if (i >= p.n_rows * p.n_head * p.score_stride) {
        return;
    }
    let rh = i / p.score_stride; // query row * n_head + head
    let j = i % p.score_stride;
    let r = rh / p.n_head;
    let h = rh % p.n_head;
    let range = row_range(r);
    if (j >= range.y) {
        scores[i] = MASKED;
        return;
    }
    let q_base = rh * p.head_dim;
    let kb = (range.x + j) * (p.k_dim / 2u) + (h / p.group) * p.head_dim / 2u;
    var s = 0.0;
    for (var d = 0u; d < p.head_dim / 2u; d++) {
        let kk = kv_pair(kc[kb + d]);
        s += round_f16(q[q_base + 2u * d]) * kk.x;
        s += round_f16(q[q_base + 2u * d + 1u]) * kk.y;
    }
    scores[i] = s * p.scale;
}

@compute @workgroup_size(WG)
fn pv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
      @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_wg(wid, nwg) * WG + lid.x;
    let half_dv = p.head_dim_v / 2u;
    if (i >= p.n_rows * p.n_head * p.n_chunks * half_dv) {
        return;
    }
    let rc = i / half_dv; // (query row * n_head + head) * n_chunks + chunk
    let d = 2u * (i % half_dv);
    let rh = rc / p.n_chunks;
    let c = rc % p.n_chunks;
    let range = row_range(rh / p.n_head);
    let vw = p.v_dim / 2u;
    let vo = ((rh % p.n_head) / p.group * p.head_dim_v + d) / 2u;
    let s_base = rh * p.score_stride;
    var acc = vec2<f32>(0.0);
    for (var j = c * PV_CHUNK; j < min(range.y, (c + 1u) * PV_CHUNK); j++) {
        acc += round_f16(scores[s_base + j]) * kv_pair(vc[(range.x + j) * vw + vo]);
    }
    out[rc * p.head_dim_v + d] = acc.x;
    out[rc * p.head_dim_v + d + 1u] = acc.y;
}

@compute @workgroup_size(WG)
fn pv_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_wg(wid, nwg) * WG + lid.x;
    if (i >= p.n_rows * p.n_head * p.head_dim_v) {
        return;
    }
    let rh = i / p.head_dim_v;
    let d = i % p.head_dim_v;
    var acc = 0.0;
    for (var c = 0u; c < p.n_chunks; c++) {
        acc += partial[(rh * p.n_chunks + c) * p.head_dim_v + d];
    }
    out[i] = acc;
}
