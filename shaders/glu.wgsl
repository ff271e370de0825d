// glu: out = act(gate) * up (act: common/act.wgsl, GELU or SiLU).

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;       // [n]
@group(0) @binding(1) var<storage, read> up: array<f32>;         // [n]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [n]
@group(0) @binding(4) var<uniform> p: Params;

#include "common/grid.wgsl"
#include "common/act.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_wg(wid, nwg) * WG + lid.x;
    if (i >= p.n) {
        return;
    }
    out[i] = act(gate[i]) * up[i];
}
