// argmax: per row, the largest value of x[row * n..(row + 1) * n] and its index (ties to the
// lower index), for greedy decoding without reading the logits back (speculation verifies a
// draft's rows at once). One workgroup per row; reduction in workgroup memory.
// A NaN or infinite value wins over every finite one, so the host sees it in the value it reads
// back and reports broken logits instead of sampling them. The test is on the bits: WGSL may
// assume floats are never NaN, so `v != v` could be folded away.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;          // [rows, n]
@group(0) @binding(3) var<storage, read_write> out: array<u32>;  // [rows, 2]: index, bits of the value
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> rv: array<f32, WG>;
var<workgroup> ri: array<u32, WG>;

// NaN or +-inf (exponent bits all set).
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) >= 0x7f800000u;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let base = wid.x * p.n;
    var bv = -3.4028e38;
    var bi = 0xffffffffu;
    for (var i = lid.x; i < p.n; i += WG) {
        let v = x[base + i];
        if (bi == 0xffffffffu || (!non_finite(bv) && (non_finite(v) || v > bv))) {
            bv = v;
            bi = i;
        }
    }
    rv[lid.x] = bv;
    ri[lid.x] = bi;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid.x < w) {
            let v = rv[lid.x + w];
            let i = ri[lid.x + w];
            let mine = rv[lid.x];
            let mine_set = ri[lid.x] != 0xffffffffu;
            if (i != 0xffffffffu && (!mine_set || (!non_finite(mine) && (non_finite(v) || v > mine || (v == mine && i < ri[lid.x]))))) {
                rv[lid.x] = v;
                ri[lid.x] = i;
            }
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        out[2u * wid.x] = ri[0];
        out[2u * wid.x + 1u] = bitcast<u32>(rv[0]);
    }
}
