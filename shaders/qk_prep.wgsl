// qk_prep: attention's inputs made ready in one dispatch, as rms_norm.wgsl (per head, with
// Q_NORM / K_NORM), rope.wgsl, scale.wgsl (Q_SCALE) and attention.wgsl's store_kv would make them
// one after another, with the same arithmetic:
//   query heads: norm, rotate, scale, in place in q;
//   key heads:   norm, rotate (in place in k), then stored in the cache as f16 pairs, with the
//                value head of the same index.
// One workgroup per (row, head) over the n_head query heads then the n_head_kv key heads.
// KV_Q8: the cache holds q8_0 blocks (9 words per 32 values: the scale as an f32 rounded to f16,
// 8 words of packed i8; GpuKv), quantized as the CPU's `kv::quantize_q8_0` (d = amax / 127, q = round_half_even(x * 127 / amax)), one block per
// invocation.

struct Params {
    n_rows: u32,
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    head_dim_v: u32,
    n_rot: u32,
    pos0: u32,
    theta_scale: f32,
    freq_scale: f32,
    eps: f32,
    q_scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;  // [n_rows, n_head * head_dim]
@group(0) @binding(1) var<storage, read_write> k: array<f32>;  // [n_rows, n_head_kv * head_dim]
@group(0) @binding(2) var<storage, read> v: array<f32>;        // [n_rows, n_head_kv * head_dim_v]
@group(0) @binding(3) var<storage, read_write> kc: array<u32>; // [n_ctx, n_head_kv * head_dim / 2] f16 pairs
@group(0) @binding(4) var<storage, read_write> vc: array<u32>; // [n_ctx, n_head_kv * head_dim_v / 2]
@group(0) @binding(5) var<uniform> p: Params;
#ifdef Q_NORM
@group(0) @binding(6) var<storage, read> qn: array<f32>;       // [head_dim]
#endif
#ifdef K_NORM
@group(0) @binding(7) var<storage, read> kn: array<f32>;       // [head_dim]
#endif
#ifdef FREQ_FACTORS
@group(0) @binding(8) var<storage, read> ff: array<f32>;       // [n_rot / 2]
#endif

#include "common/grid.wgsl"
#include "common/rope.wgsl"
#include "common/f16.wgsl"
#ifdef KV_Q8
#include "common/kv_q8.wgsl"
#endif

var<workgroup> part: array<f32, WG>;

// The workgroup's sum of `s` (every invocation gets it).
fn sum_wg(s: f32, lid: u32) -> f32 {
    part[lid] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if (lid < h) {
            part[lid] += part[lid + h];
        }
        workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier();
    return total;
}

fn pair_angle(pos: u32, j: u32) -> f32 {
#ifdef FREQ_FACTORS
    return rope_angle(pos, j, p.theta_scale, p.freq_scale, ff[j]);
#else
    return rope_angle(pos, j, p.theta_scale, p.freq_scale, 1.0);
#endif
}

// Element indices (within a head) of rotary pair j.
fn pair(j: u32) -> vec2<u32> {
#ifdef NEOX
    return vec2<u32>(j, j + p.n_rot / 2u);
#else
    return vec2<u32>(2u * j, 2u * j + 1u);
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let heads = p.n_head + p.n_head_kv;
    let g = flat_wg(wid, nwg);
    let live = g < p.n_rows * heads;
    let gg = min(g, p.n_rows * heads - 1u);
    let r = gg / heads;
    let hh = gg % heads;
    let is_q = hh < p.n_head;
    let hd = p.head_dim;
    let pos = p.pos0 + r;
    // This head's elements, in q or in k.
    var base: u32;
    if (is_q) {
        base = r * p.n_head * hd + hh * hd;
    } else {
        base = r * p.n_head_kv * hd + (hh - p.n_head) * hd;
    }

    // The per-head norm: its scale (1 where this kind of head has no norm).
    var ss = 0.0;
    for (var e = lid.x; e < hd; e += WG) {
        var x: f32;
        if (is_q) {
            x = q[base + e];
        } else {
            x = k[base + e];
        }
        ss += x * x;
    }
    let scale = 1.0 / sqrt(sum_wg(ss, lid.x) / f32(hd) + p.eps);

    // Rotated pairs, then the dimensions past n_rot; each element is read and written by the
    // same invocation (the sum above read them all before the barrier).
    for (var j = lid.x; j < hd / 2u; j += WG) {
        if (!live) {
            break;
        }
        if (j < p.n_rot / 2u) {
            let ab = pair(j);
            let t = pair_angle(pos, j);
            let c = cos(t);
            let s = sin(t);
            if (is_q) {
                let x0 = normed_q(base, ab.x, scale);
                let x1 = normed_q(base, ab.y, scale);
                q[base + ab.x] = scaled_q(x0 * c - x1 * s);
                q[base + ab.y] = scaled_q(x0 * s + x1 * c);
            } else {
                let x0 = normed_k(base, ab.x, scale);
                let x1 = normed_k(base, ab.y, scale);
                k[base + ab.x] = x0 * c - x1 * s;
                k[base + ab.y] = x0 * s + x1 * c;
            }
        }
    }
    for (var e = p.n_rot + lid.x; e < hd; e += WG) {
        if (!live) {
            break;
        }
        if (is_q) {
            q[base + e] = scaled_q(normed_q(base, e, scale));
        } else {
            k[base + e] = normed_k(base, e, scale);
        }
    }

    // Key heads: the rotated key and the value head into the cache.
    storageBarrier();
    if (!live || is_q) {
        return;
    }
    let kh = hh - p.n_head;
    let dv = p.head_dim_v;
    let vb = r * p.n_head_kv * dv + kh * dv;
#ifdef KV_Q8
    for (var b = lid.x; b < hd / 32u; b += WG) {
        var x: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            let e = base + 32u * b + 4u * i;
            x[i] = vec4<f32>(k[e], k[e + 1u], k[e + 2u], k[e + 3u]);
        }
        let blk = kv_q8_block(x);
        let o = (pos * (p.n_head_kv * hd / 32u) + kh * hd / 32u + b) * 9u;
        for (var w = 0u; w < 9u; w++) {
            kc[o + w] = blk[w];
        }
    }
    for (var b = lid.x; b < dv / 32u; b += WG) {
        var x: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            let e = vb + 32u * b + 4u * i;
            x[i] = vec4<f32>(v[e], v[e + 1u], v[e + 2u], v[e + 3u]);
        }
        let blk = kv_q8_block(x);
        let o = (pos * (p.n_head_kv * dv / 32u) + kh * dv / 32u + b) * 9u;
        for (var w = 0u; w < 9u; w++) {
            vc[o + w] = blk[w];
        }
    }
#else
    let kw = p.n_head_kv * hd / 2u;
    for (var i = lid.x; i < hd / 2u; i += WG) {
        kc[pos * kw + kh * hd / 2u + i] = pack_f16x2(k[base + 2u * i], k[base + 2u * i + 1u]);
    }
    let vw = p.n_head_kv * dv / 2u;
    for (var i = lid.x; i < dv / 2u; i += WG) {
        vc[pos * vw + kh * dv / 2u + i] = pack_f16x2(v[vb + 2u * i], v[vb + 2u * i + 1u]);
    }
#endif
}

fn normed_q(base: u32, e: u32, scale: f32) -> f32 {
#ifdef Q_NORM
    return q[base + e] * scale * qn[e];
#else
    return q[base + e];
#endif
}

fn normed_k(base: u32, e: u32, scale: f32) -> f32 {
#ifdef K_NORM
    return k[base + e] * scale * kn[e];
#else
    return k[base + e];
#endif
}

fn scaled_q(x: f32) -> f32 {
#ifdef Q_SCALE
    return x * p.q_scale;
#else
    return x;
#endif
}
