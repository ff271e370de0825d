// BF16 weights: the high 16 bits of an f32.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let b = rowb + 2u * e;
    let v0 = ld_u32(b);
    let v1 = ld_u32(b + 4u);
    return vec4<f32>(bitcast<f32>(v0 << 16u), bitcast<f32>(v0 & 0xffff0000u), bitcast<f32>(v1 << 16u), bitcast<f32>(v1 & 0xffff0000u));
}
fn dq1(rowb: u32, e: u32) -> f32 {
    return bitcast<f32>(ld_u16(rowb + 2u * e) << 16u);
}
