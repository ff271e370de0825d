// rope: rotary position embedding in place. Row i has position pos0 + i; pair k of every head is
// rotated by theta_k = freq_scale * pos * theta_scale^k / freq_factor_k, the power taken by
// repeated f32 multiplication as ggml does. NEOX pairs (k, k + n_rot/2), else (2k, 2k + 1).

struct Params {
    n_rows: u32,
    cols: u32,
    head_dim: u32,
    n_rot: u32,
    pos0: u32,
    theta_scale: f32,
    freq_scale: f32,
    _pad: u32,
}

#ifdef FREQ_FACTORS
@group(0) @binding(1) var<storage, read> ff: array<f32>;         // [n_rot / 2]
#endif
@group(0) @binding(3) var<storage, read_write> x: array<f32>;    // [n_rows, cols]
@group(0) @binding(4) var<uniform> p: Params;

#include "common/grid.wgsl"
#include "common/rope.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let half = p.n_rot / 2u;
    let heads = p.cols / p.head_dim;
    let g = flat_wg(wid, nwg) * WG + lid.x;
    if (g >= p.n_rows * heads * half) {
        return;
    }
    let k = g % half;
    let h = (g / half) % heads;
    let r = g / (half * heads);
#ifdef FREQ_FACTORS
    let t = rope_angle(p.pos0 + r, k, p.theta_scale, p.freq_scale, ff[k]);
#else
    let t = rope_angle(p.pos0 + r, k, p.theta_scale, p.freq_scale, 1.0);
#endif
    let c = cos(t);
    let s = sin(t);
    let base = r * p.cols + h * p.head_dim;
#ifdef NEOX
    let a = base + k;
    let b = base + k + half;
#else
    let a = base + 2u * k;
    let b = a + 1u;
#endif
    let x0 = x[a];
    let x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x0 * s + x1 * c;
}
