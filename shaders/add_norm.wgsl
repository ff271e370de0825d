// add_norm: the end of a block. The residual stream x = res + t (with POST, Gemma's post-norm:
// res + rms_norm(t) * post), then the next block's input h = rms_norm(x) * w; with Q8, also h as
// Q8 blocks (common/q8.wgsl) for the next matrix-vector products, so they need no quantize_q8.
// Same arithmetic, in the same order, as rms_norm.wgsl (with ADD) then add / rms_norm: one
// dispatch instead of two or three. One workgroup per row.

struct Params {
    n: u32,      // columns (one row)
    n_rows: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> t: array<f32>;         // [n_rows, n]
@group(0) @binding(1) var<storage, read> res: array<f32>;       // [n_rows, n]
#ifdef POST
@group(0) @binding(2) var<storage, read> post: array<f32>;      // [n]
#endif
@group(0) @binding(3) var<storage, read_write> x: array<f32>;   // [n_rows, n]
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read> w: array<f32>;         // [n]
@group(0) @binding(6) var<storage, read_write> h: array<f32>;   // [n_rows, n]
#ifdef Q8
@group(0) @binding(7) var<storage, read_write> hq: array<u32>;  // [n_rows, n / 32 * 9]
#endif

#include "common/grid.wgsl"
#ifdef Q8
#include "common/q8.wgsl"
#endif

var<workgroup> part: array<f32, WG>;

// The workgroup's sum of `s` (every invocation gets it); `part` is free again on return.
fn sum_wg(s: f32, lid: u32) -> f32 {
    part[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            part[lid] += part[lid + k];
        }
        workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = flat_wg(wid, nwg);
    // Workgroups past the last row (a grid split over y) compute row n_rows - 1 and write
    // nothing: barriers stay in uniform control flow.
    let live = row < p.n_rows;
    let base = min(row, p.n_rows - 1u) * p.n;
#ifdef POST
    var st = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
        let v = t[base + i];
        st += v * v;
    }
    let scale_t = 1.0 / sqrt(sum_wg(st, lid.x) / f32(p.n) + p.eps);
#endif
    var sx = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
#ifdef POST
        let y = t[base + i] * scale_t * post[i] + res[base + i];
#else
        let y = t[base + i] + res[base + i];
#endif
        if (live) {
            x[base + i] = y;
        }
        sx += y * y;
    }
    let scale = 1.0 / sqrt(sum_wg(sx, lid.x) / f32(p.n) + p.eps);
    for (var i = lid.x; i < p.n; i += WG) {
        if (live) {
            h[base + i] = x[base + i] * scale * w[i];
        }
    }
#ifdef Q8
    // Every invocation's h is written before any block is read.
    storageBarrier();
    let nb = p.n / 32u;
    for (var b = lid.x; b < nb; b += WG) {
        if (live) {
            let hb = base + b * 32u;
            var amax = 0.0;
            var bad = false;
            for (var j = 0u; j < 32u; j++) {
                amax = max(amax, abs(h[hb + j]));
                bad = bad || any_non_finite(vec4<f32>(h[hb + j]));
            }
            let s = q8_scale(amax);
            let ob = (base / 32u + b) * 9u;
            hq[ob] = select(bitcast<u32>(s.x), Q8_NAN_SCALE, bad);
            for (var j = 0u; j < 8u; j++) {
                let v = vec4<f32>(h[hb + 4u * j], h[hb + 4u * j + 1u], h[hb + 4u * j + 2u], h[hb + 4u * j + 3u]);
                hq[ob + 1u + j] = pack_i8x4(round_away(v * s.y));
            }
        }
    }
#endif
}
