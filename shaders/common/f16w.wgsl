// F16 weights: 2 bytes per element.
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let b = rowb + 2u * e;
    return vec4<f32>(unpack2x16float(ld_u32(b)), unpack2x16float(ld_u32(b + 4u)));
}
fn dq1(rowb: u32, e: u32) -> f32 {
    return ld_f16(rowb + 2u * e);
}
