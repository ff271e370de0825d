// get_rows: out[i, c] = scale * w[row_i, c] for the (i, row_i) pairs in `ids` whose rows lie in
// this weight part (the host groups ids by part). Embedding lookup of quantized rows.

struct Params {
    n_ids: u32,
    n_cols: u32,
    row_bytes: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> wq: array<u32>;         // [part rows, row_bytes] GGUF blocks
@group(0) @binding(1) var<storage, read> ids: array<u32>;        // [n_ids, 2]: (output row, part row)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [rows, n_cols]
@group(0) @binding(4) var<uniform> p: Params;

#include "common/dequant.wgsl"
#include "common/grid.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let g = flat_wg(wid, nwg) * WG + lid.x;
    if (g >= p.n_ids * p.n_cols) {
        return;
    }
    let i = g / p.n_cols;
    let c = g % p.n_cols;
    let dst = ids[2u * i];
    let row = ids[2u * i + 1u];
    out[dst * p.n_cols + c] = dq1(row * p.row_bytes, c) * p.scale;
}
