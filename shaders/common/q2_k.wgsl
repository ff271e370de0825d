// block_q2_K (84 bytes, 256 values): u8 scales[16] (low nibble scale, high nibble min);
// u8 qs[64] (2-bit); f16 d; f16 dmin. Element e = 128n + 32j + l: bits 2j..2j+1 of qs[32n + l],
// scale byte 8n + 2j + l/16; value = d * sc * q - dmin * m.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 256u) * 84u;
    let r = e % 256u;
    let n = r / 128u;
    let j = (r % 128u) / 32u;
    let l = r % 32u;
    let q = (ld_u32(blk + 16u + 32u * n + l) >> (2u * j)) & 0x03030303u;
    let sc = ld_u8(blk + 8u * n + 2u * j + l / 16u);
    return ld_f16(blk + 80u) * f32(sc & 0xfu) * vec4<f32>(u8x4(q)) - ld_f16(blk + 82u) * f32(sc >> 4u);
}
