// block_q4_0 (18 bytes, 32 values): f16 d; u8 qs[16]. Element i < 16 is the low nibble of qs[i],
// element i + 16 the high nibble; value = d * (q - 8).
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 32u) * 18u;
    let l = e % 32u;
    let q = (ld_u32(blk + 2u + l % 16u) >> ((l / 16u) * 4u)) & 0x0f0f0f0fu;
    return ld_f16(blk) * (vec4<f32>(u8x4(q)) - 8.0);
}

#ifdef XQ8
// One whole block (byte `blk`) with the Q8 activation block at word `xb` of `xq` (see
// quantize_q8.wgsl): dot4I8Packed(q, x) - 8 * sum(x), as the CPU's `vec_dot_q4_0_q8_0` sums
// (q - 8) * x.
fn dot_q8(blk: u32, xb: u32) -> f32 {
    var s = 0i;
    var sx = 0i;
    for (var j = 0u; j < 4u; j++) {
        let q = ld_u32(blk + 2u + 4u * j);
        let xl = xq[xb + 1u + j];
        let xh = xq[xb + 5u + j];
        s += dot4I8Packed(q & 0x0f0f0f0fu, xl) + dot4I8Packed((q >> 4u) & 0x0f0f0f0fu, xh);
        sx += dot4I8Packed(0x01010101u, xl) + dot4I8Packed(0x01010101u, xh);
    }
    return f32(s - 8i * sx) * ld_f16(blk) * bitcast<f32>(xq[xb]);
}

// Part j (of XQ8_PARTS) of one block for the cooperative layout: qs word j, whose low nibbles
// are elements 4j..4j+3 and high nibbles 16+4j..16+4j+3.
fn dot_q8_part(blk: u32, xb: u32, j: u32) -> f32 {
    let q = ld_u32(blk + 2u + 4u * j);
    let xl = xq[xb + 1u + j];
    let xh = xq[xb + 5u + j];
    let s = dot4I8Packed(q & 0x0f0f0f0fu, xl) + dot4I8Packed((q >> 4u) & 0x0f0f0f0fu, xh);
    let sx = dot4I8Packed(0x01010101u, xl) + dot4I8Packed(0x01010101u, xh);
    return f32(s - 8i * sx) * (ld_f16(blk) * bitcast<f32>(xq[xb]));
}
const XQ8_BS: u32 = 32u;
const XQ8_TS: u32 = 18u;
const XQ8_PARTS: u32 = 4u;
#endif
