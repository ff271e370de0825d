// ggml `get_scale_min_k4`: the 6-bit scale and min of sub-block `is` (0..8) from the 12 packed
// bytes at `sb` (Q4_K, Q5_K).
fn k_scale_min(sb: u32, is: u32) -> vec2<f32> {
    if (is < 4u) {
        return vec2<f32>(f32(ld_u8(sb + is) & 63u), f32(ld_u8(sb + is + 4u) & 63u));
    }
    let a = ld_u8(sb + is + 4u);
    let sc = (a & 0xfu) | ((ld_u8(sb + is - 4u) >> 6u) << 4u);
    let m = (a >> 4u) | ((ld_u8(sb + is) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}
