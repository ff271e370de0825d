// quantize_q8: activation rows to Q8 blocks (common/q8.wgsl) for the integer matrix-vector
// product (linear.wgsl with XQ8). One invocation per block; rows are consecutive (k % 32 == 0).

struct Params {
    n: u32, // blocks (all rows)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;    // [n * 8] vec4
@group(0) @binding(3) var<storage, read_write> out: array<u32>;  // [n * 9]
@group(0) @binding(4) var<uniform> p: Params;

#include "common/grid.wgsl"
#include "common/q8.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = flat_wg(wid, nwg) * WG + lid.x;
    if (b >= p.n) {
        return;
    }
    var amax = 0.0;
    var bad = false;
    for (var i = 0u; i < 8u; i++) {
        let v = abs(x[b * 8u + i]);
        bad = bad || any_non_finite(v);
        amax = max(amax, max(max(v.x, v.y), max(v.z, v.w)));
    }
    let s = q8_scale(amax);
    out[b * 9u] = select(bitcast<u32>(s.x), Q8_NAN_SCALE, bad);
    for (var i = 0u; i < 8u; i++) {
        out[b * 9u + 1u + i] = pack_i8x4(round_away(x[b * 8u + i] * s.y));
    }
}
