// block_q5_1 (24 bytes, 32 values): f16 d, f16 m; u32 qh; u8 qs[16] (as Q5_0); value = d * q + m.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 32u) * 24u;
    let l = e % 32u;
    let lo = (ld_u32(blk + 8u + l % 16u) >> ((l / 16u) * 4u)) & 0x0f0f0f0fu;
    let h = ld_u32(blk + 4u) >> l;
    let hb = vec4<u32>(h & 1u, (h >> 1u) & 1u, (h >> 2u) & 1u, (h >> 3u) & 1u) * 16u;
    return ld_f16(blk) * vec4<f32>(u8x4(lo) + hb) + ld_f16(blk + 2u);
}
