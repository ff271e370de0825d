// block_q3_K (110 bytes, 256 values): u8 hmask[32]; u8 qs[64] (low 2 bits); u8 scales[12]
// (16 6-bit scales, packed); f16 d. Element e = 128n + 32j + l: low bits 2j..2j+1 of qs[32n + l],
// high bit (4n + j) of hmask[l] (set: +0, clear: -4), scale s = 8n + 2j + l/16;
// value = d * (scale_s - 32) * q.
fn q3k_scale(blk: u32, s: u32) -> f32 {
    var low = ld_u8(blk + 96u + s % 8u);
    if (s >= 8u) {
        low = low >> 4u;
    }
    let hi = (ld_u8(blk + 104u + s % 4u) >> (2u * (s / 4u))) & 3u;
    return f32(i32((low & 0xfu) | (hi << 4u)) - 32);
}
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 256u) * 110u;
    let r = e % 256u;
    let n = r / 128u;
    let j = (r % 128u) / 32u;
    let l = r % 32u;
    let q = (ld_u32(blk + 32u + 32u * n + l) >> (2u * j)) & 0x03030303u;
    let h = (ld_u32(blk + l) >> (4u * n + j)) & 0x01010101u;
    let v = vec4<f32>(u8x4(q)) + 4.0 * vec4<f32>(u8x4(h)) - 4.0;
    return ld_f16(blk + 108u) * q3k_scale(blk, 8u * n + 2u * j + l / 16u) * v;
}
