// block_q5_0 (22 bytes, 32 values): f16 d; u32 qh (bit i = 5th bit of element i); u8 qs[16]
// (low 4 bits, nibbles as Q4_0); value = d * (q - 16).
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 32u) * 22u;
    let l = e % 32u;
    let lo = (ld_u32(blk + 6u + l % 16u) >> ((l / 16u) * 4u)) & 0x0f0f0f0fu;
    let h = ld_u32(blk + 2u) >> l;
    let hb = vec4<u32>(h & 1u, (h >> 1u) & 1u, (h >> 2u) & 1u, (h >> 3u) & 1u) * 16u;
    return ld_f16(blk) * (vec4<f32>(u8x4(lo) + hb) - 16.0);
}

// Spread bits 0..3 of `h` to bit 4 of each byte (the 5th bit of four consecutive quants).
fn q5_hbits(h: u32) -> u32 {
    return ((h & 1u) | ((h & 2u) << 7u) | ((h & 4u) << 14u) | ((h & 8u) << 21u)) << 4u;
}

#ifdef DOT_BLK
// The dot product of one whole block (byte `blk`) with activations xv(xi..xi+31).
fn dot_blk(blk: u32, xi: u32) -> f32 {
    let qh = ld_u32(blk + 2u);
    var sum = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let q = ld_u32(blk + 6u + 4u * j);
        let lo = (q & 0x0f0f0f0fu) | q5_hbits(qh >> (4u * j));
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | q5_hbits(qh >> (16u + 4u * j));
        sum += dot(vec4<f32>(u8x4(lo)) - 16.0, xv(xi + 4u * j));
        sum += dot(vec4<f32>(u8x4(hi)) - 16.0, xv(xi + 16u + 4u * j));
    }
    return ld_f16(blk) * sum;
}
const DOT_BLK_BS: u32 = 32u;
const DOT_BLK_TS: u32 = 22u;
#endif

#ifdef XQ8
// One whole block (byte `blk`) with the Q8 activation block at word `xb` of `xq` (see
// quantize_q8.wgsl): the 5-bit quants (0..31) fit in i8, so the integer sum is
// dot4I8Packed(q, x) - 16 * sum(x), as the CPU's `vec_dot_q5_0_q8_0` sums (q - 16) * x.
fn dot_q8(blk: u32, xb: u32) -> f32 {
    let qh = ld_u32(blk + 2u);
    var s = 0i;
    var sx = 0i;
    for (var j = 0u; j < 4u; j++) {
        let q = ld_u32(blk + 6u + 4u * j);
        let lo = (q & 0x0f0f0f0fu) | q5_hbits(qh >> (4u * j));
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | q5_hbits(qh >> (16u + 4u * j));
        let xl = xq[xb + 1u + j];
        let xh = xq[xb + 5u + j];
        s += dot4I8Packed(lo, xl) + dot4I8Packed(hi, xh);
        sx += dot4I8Packed(0x01010101u, xl) + dot4I8Packed(0x01010101u, xh);
    }
    return (ld_f16(blk) * bitcast<f32>(xq[xb])) * f32(s - 16i * sx);
}

// Part j (of XQ8_PARTS) of one block for the cooperative layout: qs word j with its 5th bits,
// elements 4j..4j+3 (low nibbles) and 16+4j..16+4j+3 (high nibbles).
fn dot_q8_part(blk: u32, xb: u32, j: u32) -> f32 {
    let qh = ld_u32(blk + 2u);
    let q = ld_u32(blk + 6u + 4u * j);
    let lo = (q & 0x0f0f0f0fu) | q5_hbits(qh >> (4u * j));
    let hi = ((q >> 4u) & 0x0f0f0f0fu) | q5_hbits(qh >> (16u + 4u * j));
    let xl = xq[xb + 1u + j];
    let xh = xq[xb + 5u + j];
    let s = dot4I8Packed(lo, xl) + dot4I8Packed(hi, xh);
    let sx = dot4I8Packed(0x01010101u, xl) + dot4I8Packed(0x01010101u, xh);
    return (ld_f16(blk) * bitcast<f32>(xq[xb])) * f32(s - 16i * sx);
}
const XQ8_BS: u32 = 32u;
const XQ8_TS: u32 = 22u;
const XQ8_PARTS: u32 = 4u;
#endif
