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
