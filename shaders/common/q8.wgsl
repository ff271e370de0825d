// Q8 activation blocks (quantize_q8.wgsl, add_norm.wgsl with Q8): each block of 32 values is 9
// words, the scale d as an f32 rounded to f16 (as the CPU's `quantize_acts` stores it) and 8
// words of 4 packed i8 quants. Same math as the CPU's `quantize_row_q8_0`: d = amax / 127,
// q = round-half-away(x / d). A block holding a NaN or an infinity gets a NaN scale (as the CPU's
// `quantize_acts` does), so the products it feeds are NaN and the logits' check reports the broken
// model, instead of quantizing the bad value to some integer and computing finite garbage.

// C `roundf`: halfway cases away from zero (WGSL `round` is half-to-even).
fn round_away(v: vec4<f32>) -> vec4<i32> {
    let t = trunc(v);
    return vec4<i32>(select(t, t + sign(v), abs(v - t) >= vec4<f32>(0.5)));
}

fn pack_i8x4(q: vec4<i32>) -> u32 {
    let u = bitcast<vec4<u32>>(q) & vec4<u32>(0xffu);
    return u.x | (u.y << 8u) | (u.z << 16u) | (u.w << 24u);
}

// NaN or +-inf in any lane (on the bits: WGSL may assume floats are never NaN, so `v != v` could
// be folded away).
fn any_non_finite(v: vec4<f32>) -> bool {
    return any((bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) >= vec4<u32>(0x7f800000u));
}

// The scale word of a block with a non-finite value: a quiet NaN.
const Q8_NAN_SCALE: u32 = 0x7fc00000u;

// The scale word of a block whose largest magnitude is `amax`, and the factor to multiply by.
fn q8_scale(amax: f32) -> vec2<f32> {
    let d = amax / 127.0;
    var id = 0.0;
    if (d != 0.0) {
        id = 1.0 / d;
    }
    return vec2<f32>(unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x, id);
}
