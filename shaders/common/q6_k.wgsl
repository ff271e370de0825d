// block_q6_K (210 bytes, 256 values): u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits);
// i8 scales[16]; f16 d. Element e = 128n + 32t + l: nibble (t / 2) of ql[64n + 32(t % 2) + l],
// bits 2t..2t+1 of qh[32n + l], scale 8n + 2t + l/16; value = d * scale * (q - 32).
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 256u) * 210u;
    let r = e % 256u;
    let n = r / 128u;
    let t = (r % 128u) / 32u;
    let l = r % 32u;
    let lo = (ld_u32(blk + 64u * n + 32u * (t % 2u) + l) >> (4u * (t / 2u))) & 0x0f0f0f0fu;
    let hi = (ld_u32(blk + 128u + 32u * n + l) >> (2u * t)) & 0x03030303u;
    let sc = f32(sext8(ld_u8(blk + 192u + 8u * n + 2u * t + l / 16u)));
    return ld_f16(blk + 208u) * sc * (vec4<f32>(u8x4(lo | (hi << 4u))) - 32.0);
}

#ifdef DOT_BLK
// The dot product of one whole block (byte `blk`) with activations xv(xi..xi+255): each loaded
// word of ql/qh feeds four groups of 4 quants.
fn dot_blk(blk: u32, xi: u32) -> f32 {
    var sum = 0.0;
    for (var n = 0u; n < 2u; n++) {
        for (var l = 0u; l < 32u; l += 4u) {
            let ql0 = ld_u32(blk + 64u * n + l);
            let ql1 = ld_u32(blk + 64u * n + 32u + l);
            let qh = ld_u32(blk + 128u + 32u * n + l);
            let sb = blk + 192u + 8u * n + l / 16u;
            let x0 = xi + 128u * n + l;
            let q1 = (ql0 & 0x0f0f0f0fu) | ((qh & 0x03030303u) << 4u);
            let q2 = (ql1 & 0x0f0f0f0fu) | (((qh >> 2u) & 0x03030303u) << 4u);
            let q3 = ((ql0 >> 4u) & 0x0f0f0f0fu) | (((qh >> 4u) & 0x03030303u) << 4u);
            let q4 = ((ql1 >> 4u) & 0x0f0f0f0fu) | (((qh >> 6u) & 0x03030303u) << 4u);
            sum += f32(sext8(ld_u8(sb))) * dot(vec4<f32>(u8x4(q1)) - 32.0, xv(x0));
            sum += f32(sext8(ld_u8(sb + 2u))) * dot(vec4<f32>(u8x4(q2)) - 32.0, xv(x0 + 32u));
            sum += f32(sext8(ld_u8(sb + 4u))) * dot(vec4<f32>(u8x4(q3)) - 32.0, xv(x0 + 64u));
            sum += f32(sext8(ld_u8(sb + 6u))) * dot(vec4<f32>(u8x4(q4)) - 32.0, xv(x0 + 96u));
        }
    }
    return ld_f16(blk + 208u) * sum;
}
const DOT_BLK_BS: u32 = 256u;
const DOT_BLK_TS: u32 = 210u;
#endif
