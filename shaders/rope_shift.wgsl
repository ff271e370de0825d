// rope_shift: one layer's keys moved by a context shift (llama.cpp's: the cached positions
// `keep..keep + discard` leave, the rest move down by `discard`). Reads `n_rows` key rows from a
// copy of the cache's moved part (`src`: the rows overlap their destination), turns each head's
// rotary embedding by `delta` positions (-discard) and writes the rows from row `dst0` of the
// cache, as f16 pairs. The arithmetic is rope.wgsl's with a signed position: values widened to
// f32, rotated, rounded to the nearest f16. One invocation per (row, head).
// KV_Q8: the rows are q8_0 blocks (GpuKv): widened, rotated and quantized again, one block of 32
// turned values at a time (llama.cpp's shift of a quantized cache: cast to f32, rope, copy back).

struct Params {
    n_rows: u32,
    n_head_kv: u32,
    head_dim: u32,
    n_rot: u32,
    dst0: u32,
    delta: i32,
    theta_scale: f32,
    freq_scale: f32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;       // [n_rows, n_head_kv * head_dim / 2] f16 pairs (or q8_0 blocks)
@group(0) @binding(3) var<storage, read_write> kc: array<u32>;  // [n_ctx, n_head_kv * head_dim / 2]
@group(0) @binding(4) var<uniform> p: Params;
#ifdef FREQ_FACTORS
@group(0) @binding(8) var<storage, read> ff: array<f32>;        // [n_rot / 2]
#endif

#include "common/grid.wgsl"
#include "common/rope.wgsl"
#include "common/f16.wgsl"
#ifdef KV_Q8
#include "common/kv_q8.wgsl"
#endif

fn factor(j: u32) -> f32 {
#ifdef FREQ_FACTORS
    return ff[j];
#else
    return 1.0;
#endif
}

#ifdef KV_Q8
// Element `d` of the head whose first value is element `w0` of the rows in `src`.
fn value(w0: u32, d: u32) -> f32 {
    let e = w0 + d;
    let blk = (e / 32u) * 9u;
    let q = bitcast<i32>(src[blk + 1u + (e % 32u) / 4u] << (24u - 8u * (e % 4u))) >> 24u;
    return bitcast<f32>(src[blk]) * f32(q);
}
#else
// Element `d` of the head whose first pair is word `w0` of `src`.
fn value(w0: u32, d: u32) -> f32 {
    let pair = unpack2x16float(src[w0 + d / 2u]);
    return select(pair.x, pair.y, (d & 1u) == 1u);
}
#endif

// Element `d` of the head after the rotation.
fn turned(w0: u32, d: u32) -> f32 {
    let x = value(w0, d);
    if (d >= p.n_rot) {
        return x;
    }
#ifdef NEOX
    let half = p.n_rot / 2u;
    let j = d % half;
    let a = rope_angle_f(f32(p.delta), j, p.theta_scale, p.freq_scale, factor(j));
    if (d < half) {
        return x * cos(a) - value(w0, d + half) * sin(a);
    }
    return value(w0, d - half) * sin(a) + x * cos(a);
#else
    let j = d / 2u;
    let a = rope_angle_f(f32(p.delta), j, p.theta_scale, p.freq_scale, factor(j));
    if ((d & 1u) == 0u) {
        return x * cos(a) - value(w0, d + 1u) * sin(a);
    }
    return value(w0, d - 1u) * sin(a) + x * cos(a);
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_wg(wid, nwg) * WG + lid.x;
    if (i >= p.n_rows * p.n_head_kv) {
        return;
    }
    let row = i / p.n_head_kv;
    let head = i % p.n_head_kv;
#ifdef KV_Q8
    let e0 = (row * p.n_head_kv + head) * p.head_dim;
    let out_blk = ((p.dst0 + row) * p.n_head_kv + head) * (p.head_dim / 32u);
    for (var b = 0u; b < p.head_dim / 32u; b++) {
        var x: array<vec4<f32>, 8>;
        for (var w = 0u; w < 8u; w++) {
            let j = 32u * b + 4u * w;
            x[w] = vec4<f32>(turned(e0, j), turned(e0, j + 1u), turned(e0, j + 2u), turned(e0, j + 3u));
        }
        let blk = kv_q8_block(x);
        let o = (out_blk + b) * 9u;
        for (var w = 0u; w < 9u; w++) {
            kc[o + w] = blk[w];
        }
    }
#else
    let words = p.n_head_kv * p.head_dim / 2u;
    let w0 = row * words + head * p.head_dim / 2u;
    let out0 = (p.dst0 + row) * words + head * p.head_dim / 2u;
    for (var w = 0u; w < p.head_dim / 2u; w++) {
        kc[out0 + w] = pack_f16x2(turned(w0, 2u * w), turned(w0, 2u * w + 1u));
    }
#endif
}
