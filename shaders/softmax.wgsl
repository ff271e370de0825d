// softmax: each row of x, in place: exp(x - max) / sum, one workgroup per row. Entries at or
// below MASKED (attention.wgsl's positions outside a row's range) become 0. The CPU reference is
// backend::cpu::ops::softmax.

struct Params {
    n_rows: u32,
    n_cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(3) var<storage, read_write> x: array<f32>;    // [n_rows, n_cols]
@group(0) @binding(4) var<uniform> p: Params;

#include "common/grid.wgsl"

const MASKED: f32 = -3.0e38;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = flat_wg(wid, nwg);
    if (row >= p.n_rows) {
        return;
    }
    let base = row * p.n_cols;
    var mx = MASKED;
    for (var j = lid.x; j < p.n_cols; j += WG) {
        mx = max(mx, x[base + j]);
    }
    red[lid.x] = mx;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid.x < w) {
            red[lid.x] = max(red[lid.x], red[lid.x + w]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();

    var sum = 0.0;
    for (var j = lid.x; j < p.n_cols; j += WG) {
        let v = x[base + j];
        let e = select(exp(v - m), 0.0, v <= MASKED);
        x[base + j] = e;
        sum += e;
    }
    red[lid.x] = sum;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid.x < w) {
            red[lid.x] += red[lid.x + w];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    for (var j = lid.x; j < p.n_cols; j += WG) {
        x[base + j] *= inv;
    }
}
