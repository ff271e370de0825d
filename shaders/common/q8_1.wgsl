// block_q8_1 (36 bytes, 32 values): f16 d, f16 s (= d * sum(qs)); i8 qs[32]; value = d * q.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 32u) * 36u;
    return ld_f16(blk) * i8x4(ld_u32(blk + 4u + e % 32u));
}
