// split_cols: out[r, c] = x[r, col_off + c] for c < out_cols (one piece of a fused qkv / gate+up).

struct Params {
    n_rows: u32,
    in_cols: u32,
    out_cols: u32,
    col_off: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;          // [n_rows, in_cols]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [n_rows, out_cols]
@group(0) @binding(4) var<uniform> p: Params;

#include "common/grid.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_wg(wid, nwg) * WG + lid.x;
    if (i >= p.n_rows * p.out_cols) {
        return;
    }
    let r = i / p.out_cols;
    let c = i % p.out_cols;
    out[i] = x[r * p.in_cols + p.col_off + c];
}
