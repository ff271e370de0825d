// f32 -> nearest f16 (ties to even), done with integer ops so every adapter rounds the same way:
// WGSL lets `pack2x16float` pick either neighbour. Matches `half::f16::from_f32` (the CPU
// reference) for finite inputs; overflow gives infinity.

fn f16_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    let sign = (u >> 16u) & 0x8000u;
    let a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        // Inf / NaN.
        return sign | 0x7c00u | select(0u, 0x200u, a > 0x7f800000u);
    }
    if (a >= 0x477ff000u) {
        // Rounds to beyond the largest f16 (65504).
        return sign | 0x7c00u;
    }
    if (a < 0x38800000u) {
        // Subnormal f16 (or zero): value = m * 2^-24.
        if (a < 0x33000000u) {
            return sign;
        }
        let e = a >> 23u;
        let m = (a & 0x7fffffu) | 0x800000u;
        let shift = 126u - e; // 14..24 for the exponents that reach here
        let q = m >> shift;
        let rem = m & ((1u << shift) - 1u);
        let half = 1u << (shift - 1u);
        let up = select(0u, 1u, rem > half || (rem == half && (q & 1u) == 1u));
        return sign | (q + up);
    }
    // Normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even.
    let r = a - 0x38000000u;
    let q = r >> 13u;
    let rem = r & 0x1fffu;
    let up = select(0u, 1u, rem > 0x1000u || (rem == 0x1000u && (q & 1u) == 1u));
    return sign | (q + up);
}

fn round_f16(x: f32) -> f32 {
    return unpack2x16float(f16_bits(x)).x;
}

fn pack_f16x2(a: f32, b: f32) -> u32 {
    return f16_bits(a) | (f16_bits(b) << 16u);
}
