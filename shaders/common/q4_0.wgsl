// block_q4_0 (18 bytes, 32 values): f16 d; u8 qs[16]. Element i < 16 is the low nibble of qs[i],
// element i + 16 the high nibble; value = d * (q - 8).
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 32u) * 18u;
    let l = e % 32u;
    let q = (ld_u32(blk + 2u + l % 16u) >> ((l / 16u) * 4u)) & 0x0f0f0f0fu;
    return ld_f16(blk) * (vec4<f32>(u8x4(q)) - 8.0);
}
