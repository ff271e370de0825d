// block_q8_0 (34 bytes, 32 values): f16 d; i8 qs[32]; value = d * q.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 32u) * 34u;
    return ld_f16(blk) * i8x4(ld_u32(blk + 2u + e % 32u));
}

#ifdef DOT_BLK
// The dot product of one whole block (starting at byte `blk`, even) with activations
// xv(xi..xi+31): 9 word loads per block instead of 8 per group of 4 in `dq4`.
fn dot_blk(blk: u32, xi: u32) -> f32 {
    let w0 = blk >> 2u;
    let first = wq_at(w0);
    var sum = 0.0;
    var d: f32;
    if ((blk & 2u) == 0u) {
        // d in the low half of the first word: the quants straddle word boundaries.
        d = unpack2x16float(first).x;
        var prev = first;
        for (var j = 0u; j < 8u; j++) {
            let next = wq_at(w0 + 1u + j);
            sum += dot(i8x4((prev >> 16u) | (next << 16u)), xv(xi + 4u * j));
            prev = next;
        }
    } else {
        d = unpack2x16float(first).y;
        for (var j = 0u; j < 8u; j++) {
            sum += dot(i8x4(wq_at(w0 + 1u + j)), xv(xi + 4u * j));
        }
    }
    return d * sum;
}
const DOT_BLK_BS: u32 = 32u;
const DOT_BLK_TS: u32 = 34u;
#endif

#ifdef XQ8
// The dot product of one whole weight block (starting at byte `blk`, even) with the Q8
// activation block at word `xb` of `xq` (f32 scale, 8 words of packed i8; see quantize_q8.wgsl):
// integer sums by `dot4I8Packed`, scaled once per block as the CPU's `vec_dot_q8_0_q8_0`.
fn dot_q8(blk: u32, xb: u32) -> f32 {
    let w0 = blk >> 2u;
    let first = wq_at(w0);
    var s = 0i;
    var d: f32;
    if ((blk & 2u) == 0u) {
        d = unpack2x16float(first).x;
        var prev = first;
        for (var j = 0u; j < 8u; j++) {
            let next = wq_at(w0 + 1u + j);
            s += dot4I8Packed((prev >> 16u) | (next << 16u), xq[xb + 1u + j]);
            prev = next;
        }
    } else {
        d = unpack2x16float(first).y;
        for (var j = 0u; j < 8u; j++) {
            s += dot4I8Packed(wq_at(w0 + 1u + j), xq[xb + 1u + j]);
        }
    }
    return f32(s) * (d * bitcast<f32>(xq[xb]));
}

// Part j (of XQ8_PARTS) of one block for the cooperative layout: quants 4j..4j+3 against the
// activation block's word j (the integer sum exact; scaled per part).
fn dot_q8_part(blk: u32, xb: u32, j: u32) -> f32 {
    let s = dot4I8Packed(ld_u32(blk + 2u + 4u * j), xq[xb + 1u + j]);
    return f32(s) * (ld_f16(blk) * bitcast<f32>(xq[xb]));
}
const XQ8_BS: u32 = 32u;
const XQ8_TS: u32 = 34u;
const XQ8_PARTS: u32 = 8u;
#endif
