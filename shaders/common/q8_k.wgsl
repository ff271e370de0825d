// block_q8_K (292 bytes, 256 values): f32 d; i8 qs[256]; i16 bsums[16]; value = d * q.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 256u) * 292u;
    return bitcast<f32>(ld_u32(blk)) * i8x4(ld_u32(blk + 4u + e % 256u));
}
