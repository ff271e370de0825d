// rms_norm: each n-wide chunk of x (a row, or one head of a row) times 1/sqrt(mean(x^2) + eps),
// times the weight w.
// One workgroup per chunk; the sum of squares is reduced in workgroup memory.

struct Params {
    n: u32,
    n_chunks: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;          // [n_chunks, n]
@group(0) @binding(1) var<storage, read> w: array<f32>;          // [n]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [n_chunks, n]
@group(0) @binding(4) var<uniform> p: Params;

#include "common/grid.wgsl"

var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat_wg(wid, nwg);
    let base = min(c, p.n_chunks - 1u) * p.n;
    var s = 0.0;
    for (var i = lid.x; i < p.n; i += WG) {
        let v = x[base + i];
        s += v * v;
    }
    part[lid.x] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if (lid.x < h) {
            part[lid.x] += part[lid.x + h];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(part[0] / f32(p.n) + p.eps);
    if (c >= p.n_chunks) {
        return;
    }
    for (var i = lid.x; i < p.n; i += WG) {
        out[base + i] = x[base + i] * scale * w[i];
    }
}
