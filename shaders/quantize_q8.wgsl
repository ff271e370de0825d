// quantize_q8: activation rows to Q8 blocks for the integer matrix-vector product
// (linear.wgsl with XQ8). Each block of 32 values becomes 9 words: the scale d as an f32
// (rounded to f16, as the CPU's `quantize_acts` stores it) and 8 words of 4 packed i8 quants.
// Same math as the CPU's `quantize_row_q8_0`: d = amax / 127, q = round-half-away(x / d).
// One invocation per block; rows are consecutive (k % 32 == 0).

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

// C `roundf`: halfway cases away from zero (WGSL `round` is half-to-even).
fn round_away(v: vec4<f32>) -> vec4<i32> {
    let t = trunc(v);
    return vec4<i32>(select(t, t + sign(v), abs(v - t) >= vec4<f32>(0.5)));
}

fn pack_i8x4(q: vec4<i32>) -> u32 {
    let u = bitcast<vec4<u32>>(q) & vec4<u32>(0xffu);
    return u.x | (u.y << 8u) | (u.z << 16u) | (u.w << 24u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = flat_wg(wid, nwg) * WG + lid.x;
    if (b >= p.n) {
        return;
    }
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let v = abs(x[b * 8u + i]);
        amax = max(amax, max(max(v.x, v.y), max(v.z, v.w)));
    }
    let d = amax / 127.0;
    var id = 0.0;
    if (d != 0.0) {
        id = 1.0 / d;
    }
    out[b * 9u] = bitcast<u32>(unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x);
    for (var i = 0u; i < 8u; i++) {
        out[b * 9u + 1u + i] = pack_i8x4(round_away(x[b * 8u + i] * id));
    }
}
