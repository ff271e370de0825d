#ifdef F16
enable f16;
#endif
// attention over the KV cache (causal, GQA/MQA, optional sliding window), split over positions
// so one token's attention spreads over the GPU however long the context (split-K, as
// flash-decoding); the cache holds f16 pairs written by qk_prep.wgsl:
//   attend:   one workgroup per (query row, head, chunk of PV_CHUNK cached positions): the
//             chunk's scores scale * q.k (q rounded to f16) into workgroup memory, their softmax
//             (max m, sum l), then the probabilities, rounded to f16, times the values;
//   reduce:   with more than one chunk, the chunks' results weighed by l_c exp(m_c - M) / sum.
// With one chunk (at most PV_CHUNK positions) attend is the whole softmax and writes the result:
// the CPU reference's arithmetic (backend::cpu::ops::attend_head) up to the order of f32 sums.
// With several, each chunk's probabilities are normalized within the chunk before their f16
// rounding (the CPU rounds the globally normalized ones): a difference at f16 rounding level.
// F16 (adapters with `shader-f16`): the cache is bound as `vec2<f16>` and read as f16 values
// instead of unpacking u32 pairs; the bytes and the results are the same.
// KV_Q8: the cache holds q8_0 blocks (9 words per 32 values: f32 scale, 8 words of i8; see
// GpuKv) and the arithmetic is llama.cpp's CPU flash attention over a q8_0 cache, as the CPU's
// `attend_head_q8_0`: the query head quantized to q8_0 blocks (in workgroup memory, once per
// workgroup), each score the blocks' integer dot products (exact in f32) times both scales, then
// sum(e_j v_j) / sum(e_j) with e_j = exp(s_j - m) unrounded and the values widened.

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
#ifdef KV_Q8
@group(0) @binding(3) var<storage, read> kc: array<u32>;            // [n_ctx, k_dim / 32] blocks of 9 words
@group(0) @binding(4) var<storage, read> vc: array<u32>;            // [n_ctx, v_dim / 32] blocks of 9 words
#else
#ifdef F16
@group(0) @binding(3) var<storage, read> kc: array<vec2<f16>>;      // [n_ctx, k_dim / 2] f16 pairs
@group(0) @binding(4) var<storage, read> vc: array<vec2<f16>>;      // [n_ctx, v_dim / 2] f16 pairs
fn kv_pair(v: vec2<f16>) -> vec2<f32> {
    return vec2<f32>(v);
}
#else
@group(0) @binding(3) var<storage, read> kc: array<u32>;            // [n_ctx, k_dim / 2] f16 pairs
@group(0) @binding(4) var<storage, read> vc: array<u32>;            // [n_ctx, v_dim / 2] f16 pairs
fn kv_pair(v: u32) -> vec2<f32> {
    return unpack2x16float(v);
}
#endif
#endif
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;    // [n_rows * n_head * n_chunks, 2]: (m, l)
// attend: [n_rows * n_head * n_chunks, head_dim_v] chunk results, or (one chunk) the result;
// reduce: the result, [n_rows, n_head * head_dim_v] (the same layout as [n_rows * n_head, head_dim_v]).
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<uniform> p: Params;
@group(0) @binding(8) var<storage, read> partial: array<f32>;        // reduce: attend's chunk results

// The score of a position outside the row's range (its probability is 0).
const MASKED: f32 = -3.0e38;

var<workgroup> sc: array<f32, PV_CHUNK>;
var<workgroup> red: array<f32, WG>;

#include "common/grid.wgsl"
#include "common/f16.wgsl"

#ifdef KV_Q8
#include "common/kv_q8.wgsl"

// The query head as q8_0 blocks (Q_BLOCKS: the largest head / 32).
var<workgroup> qq: array<u32, Q_BLOCKS * 9u>;

// Four packed i8 as f32.
fn kv_i8x4(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(v << 24u), bitcast<i32>(v << 16u), bitcast<i32>(v << 8u), bitcast<i32>(v)) >> vec4<u32>(24u));
}

// Quantize the query head at `q_base` (head_dim values) into `qq`, as the CPU's `kv::quantize_q8_0`.
fn quantize_q(q_base: u32, lid: u32) {
    for (var b = lid; b < p.head_dim / 32u; b += WG) {
        var x: array<vec4<f32>, 8>;
        for (var w = 0u; w < 8u; w++) {
            let i = q_base + 32u * b + 4u * w;
            x[w] = vec4<f32>(q[i], q[i + 1u], q[i + 2u], q[i + 3u]);
        }
        let blk = kv_q8_block(x);
        for (var w = 0u; w < 9u; w++) {
            qq[9u * b + w] = blk[w];
        }
    }
    workgroupBarrier();
}

// The q8_0 dot product of the key head whose first block is word `kb` of the cache with `qq`.
fn score_q8(kb: u32) -> f32 {
    var acc = 0.0;
    for (var b = 0u; b < p.head_dim / 32u; b++) {
        var isum = 0.0;
        for (var w = 0u; w < 8u; w++) {
            isum += dot(kv_i8x4(kc[kb + 9u * b + 1u + w]), kv_i8x4(qq[9u * b + 1u + w]));
        }
        acc += isum * (bitcast<f32>(kc[kb + 9u * b]) * bitcast<f32>(qq[9u * b]));
    }
    return acc;
}

// Values `e`, `e + 1` (e even) of cache row `pos` of the values.
fn v_pair_q8(pos: u32, e: u32) -> vec2<f32> {
    let blk = (pos * (p.v_dim / 32u) + e / 32u) * 9u;
    let v = kv_i8x4(vc[blk + 1u + (e % 32u) / 4u]);
    let d = bitcast<f32>(vc[blk]);
    return d * select(v.xy, v.zw, (e & 2u) != 0u);
}
#endif

// First cached position and number of positions attended by query row `r`.
fn row_range(r: u32) -> vec2<u32> {
    let pos = p.pos0 + r;
    var start = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        start = pos + 1u - p.window;
    }
    return vec2<u32>(start, pos + 1u - start);
}

// The workgroup's max (sum) of `v`; `red` is free again on return.
fn max_wg(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            red[lid] = max(red[lid], red[lid + w]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    return m;
}

fn sum_wg(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            red[lid] += red[lid + w];
        }
        workgroupBarrier();
    }
    let s = red[0];
    workgroupBarrier();
    return s;
}

@compute @workgroup_size(WG)
fn attend(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let total = p.n_rows * p.n_head * p.n_chunks;
    let g = flat_wg(wid, nwg);
    // Workgroups past the last (a grid split over y) redo the last and write nothing:
    // barriers stay in uniform control flow.
    let live = g < total;
    let gg = min(g, total - 1u); // (query row * n_head + head) * n_chunks + chunk
    let rh = gg / p.n_chunks;
    let c = gg % p.n_chunks;
    let h = rh % p.n_head;
    let range = row_range(rh / p.n_head);
    let j0 = c * PV_CHUNK;
    let j1 = min(range.y, j0 + PV_CHUNK); // at most j0: the chunk is past this row's range

    // Scores of the chunk.
    let q_base = rh * p.head_dim;
#ifdef KV_Q8
    quantize_q(q_base, lid.x);
#else
    let kw = p.k_dim / 2u;
    let ko = (h / p.group) * p.head_dim / 2u;
#endif
    var mx = MASKED;
    for (var j = j0 + lid.x; j < j0 + PV_CHUNK; j += WG) {
        var s = MASKED;
        if (j < j1) {
#ifdef KV_Q8
            let kb = ((range.x + j) * (p.k_dim / 32u) + (h / p.group) * (p.head_dim / 32u)) * 9u;
            s = p.scale * score_q8(kb);
#else
            let kb = (range.x + j) * kw + ko;
            var acc = 0.0;
            for (var d = 0u; d < p.head_dim / 2u; d++) {
                let kk = kv_pair(kc[kb + d]);
                acc += round_f16(q[q_base + 2u * d]) * kk.x;
                acc += round_f16(q[q_base + 2u * d + 1u]) * kk.y;
            }
            s = acc * p.scale;
#endif
        }
        sc[j - j0] = s;
        mx = max(mx, s);
    }
    let m = max_wg(mx, lid.x);

    // Softmax over the chunk.
    var l = 0.0;
    for (var j = lid.x; j < PV_CHUNK; j += WG) {
        let s = sc[j];
        let e = select(exp(s - m), 0.0, s <= MASKED);
        sc[j] = e;
        l += e;
    }
    let total_l = sum_wg(l, lid.x);
    let inv = select(1.0 / total_l, 0.0, total_l == 0.0);

    // Probabilities (rounded to f16) times values; KV_Q8: sum(e_j v_j) / sum(e_j).
    let half_dv = p.head_dim_v / 2u;
    let vw = p.v_dim / 2u;
    let vo = (h / p.group) * half_dv;
    for (var dp = lid.x; dp < half_dv; dp += WG) {
        var acc = vec2<f32>(0.0);
#ifdef KV_Q8
        for (var j = j0; j < j1; j++) {
            acc += sc[j - j0] * v_pair_q8(range.x + j, 2u * (vo + dp));
        }
        acc *= inv;
#else
        for (var j = j0; j < j1; j++) {
            acc += round_f16(sc[j - j0] * inv) * kv_pair(vc[(range.x + j) * vw + vo + dp]);
        }
#endif
        if (live) {
            out[gg * p.head_dim_v + 2u * dp] = acc.x;
            out[gg * p.head_dim_v + 2u * dp + 1u] = acc.y;
        }
    }
    if (live && lid.x == 0u && p.n_chunks > 1u) {
        stats[2u * gg] = m;
        stats[2u * gg + 1u] = total_l;
    }
}

@compute @workgroup_size(WG)
fn reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_wg(wid, nwg) * WG + lid.x;
    if (i >= p.n_rows * p.n_head * p.head_dim_v) {
        return;
    }
    let rh = i / p.head_dim_v;
    let d = i % p.head_dim_v;
    var m = MASKED;
    for (var c = 0u; c < p.n_chunks; c++) {
        m = max(m, stats[2u * (rh * p.n_chunks + c)]);
    }
    var den = 0.0;
    var acc = 0.0;
    for (var c = 0u; c < p.n_chunks; c++) {
        let rc = rh * p.n_chunks + c;
        let l = stats[2u * rc + 1u];
        let w = select(l * exp(stats[2u * rc] - m), 0.0, l == 0.0);
        den += w;
        acc += w * partial[rc * p.head_dim_v + d];
    }
    out[i] = acc / den;
}
