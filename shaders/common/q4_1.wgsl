// block_q4_1 (20 bytes, 32 values): f16 d, f16 m; u8 qs[16] (nibbles as Q4_0); value = d * q + m.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 32u) * 20u;
    let l = e % 32u;
    let q = (ld_u32(blk + 4u + l % 16u) >> ((l / 16u) * 4u)) & 0x0f0f0f0fu;
    return ld_f16(blk) * vec4<f32>(u8x4(q)) + ld_f16(blk + 2u);
}
