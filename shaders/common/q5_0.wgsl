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
