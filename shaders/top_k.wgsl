// top_k: the k (<= 64) largest values of x[0..n] with their indices, by value descending, ties
// to the lower index; for sampling without reading all logits back. A NaN or infinite value ranks
// above every finite one (as in argmax.wgsl), so the host sees it among the candidates and reports
// broken logits instead of sampling the finite rest. Two entry points:
//   chunks: one workgroup per CH-element chunk selects its k best (k rounds of a workgroup
//           arg-max over the chunk held in workgroup memory) into `cand`;
//   merge:  one workgroup selects the k best of all chunks' candidates the same way.

struct Params {
    n: u32,        // chunks: elements of x; merge: number of candidates
    k: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;              // [n]
@group(0) @binding(2) var<storage, read_write> cand: array<u32>;     // [n_chunks * k, 2]: index, value bits
@group(0) @binding(3) var<storage, read_write> out: array<u32>;      // [k, 2]: index, value bits
@group(0) @binding(4) var<uniform> p: Params;

const NONE: u32 = 0xffffffffu;
// Below every real logit; a literal beyond f32 range (e.g. -3.4028235e38) is rejected by Tint.
const LOWEST: f32 = -3.4028e38;

var<workgroup> vals: array<f32, CH>;
var<workgroup> rv: array<f32, WG>;
var<workgroup> ri: array<u32, WG>;

// NaN or +-inf (exponent bits all set), tested on the bits: WGSL may assume floats are never NaN.
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) >= 0x7f800000u;
}

// Does (v, i) rank above (bv, bi)? Non-finite values first (the lower index among them).
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    if (i == NONE) {
        return false;
    }
    if (bi == NONE) {
        return true;
    }
    let nv = non_finite(v);
    let nb = non_finite(bv);
    if (nv || nb) {
        return nv && (!nb || i < bi);
    }
    return v > bv || (v == bv && i < bi);
}

// Workgroup arg-max of the per-invocation bests; the winner ends up in rv[0], ri[0].
fn reduce(lid: u32, bv: f32, bi: u32) {
    rv[lid] = bv;
    ri[lid] = bi;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w && better(rv[lid + w], ri[lid + w], rv[lid], ri[lid])) {
            rv[lid] = rv[lid + w];
            ri[lid] = ri[lid + w];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn chunks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c0 = wid.x * CH;
    for (var i = lid.x; i < CH; i += WG) {
        vals[i] = select(LOWEST, x[min(c0 + i, p.n - 1u)], c0 + i < p.n);
    }
    workgroupBarrier();
    let len = min(CH, p.n - c0);
    for (var r = 0u; r < p.k; r++) {
        var bv = 0.0;
        var bi = NONE;
        for (var i = lid.x; i < len; i += WG) {
            // Taken elements (and padding) hold LOWEST: WGSL may assume no NaN, so no NaN marks.
            let v = vals[i];
            if ((non_finite(v) || v > LOWEST) && better(v, c0 + i, bv, bi)) {
                bv = v;
                bi = c0 + i;
            }
        }
        reduce(lid.x, bv, bi);
        let wi = ri[0];
        let wv = rv[0];
        workgroupBarrier();
        if (lid.x == 0u) {
            let o = (wid.x * p.k + r) * 2u;
            cand[o] = wi;
            cand[o + 1u] = bitcast<u32>(wv);
            if (wi != NONE) {
                vals[wi - c0] = LOWEST;
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn merge(@builtin(local_invocation_id) lid: vec3<u32>) {
    for (var r = 0u; r < p.k; r++) {
        var bv = 0.0;
        var bj = NONE;
        var bi = NONE;
        for (var j = lid.x; j < p.n; j += WG) {
            let i = cand[2u * j];
            let v = bitcast<f32>(cand[2u * j + 1u]);
            if (better(v, i, bv, bi)) {
                bv = v;
                bi = i;
                bj = j;
            }
        }
        // Reduce by (value, token index); remember which candidate slot won.
        rv[lid.x] = bv;
        ri[lid.x] = bi;
        workgroupBarrier();
        for (var w = WG / 2u; w > 0u; w >>= 1u) {
            if (lid.x < w && better(rv[lid.x + w], ri[lid.x + w], rv[lid.x], ri[lid.x])) {
                rv[lid.x] = rv[lid.x + w];
                ri[lid.x] = ri[lid.x + w];
            }
            workgroupBarrier();
        }
        let wi = ri[0];
        let wv = rv[0];
        workgroupBarrier();
        // The invocation that held the winner retires its candidate slot.
        if (bi == wi && bi != NONE) {
            cand[2u * bj] = NONE;
        }
        if (lid.x == 0u) {
            out[2u * r] = wi;
            out[2u * r + 1u] = bitcast<u32>(wv);
        }
        storageBarrier();
        workgroupBarrier();
    }
}
