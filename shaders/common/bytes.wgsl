// Byte-addressed little-endian reads from raw GGUF bytes bound as `wq: array<u32>`.
// GGUF blocks are not 4-byte aligned (Q8_0 is 34 bytes, Q6_K 210), so every quant helper reads
// through these. `b` is a byte offset into the bound buffer.

fn ld_u8(b: u32) -> u32 {
    return (wq[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

// `b` must be even (every f16 / u16 field of a ggml block is).
fn ld_u16(b: u32) -> u32 {
    return (wq[b >> 2u] >> ((b & 2u) * 8u)) & 0xffffu;
}

// Any alignment: the 4 bytes at b..b+3, possibly straddling two words.
fn ld_u32(b: u32) -> u32 {
    let s = (b & 3u) * 8u;
    let lo = wq[b >> 2u];
    if (s == 0u) {
        return lo;
    }
    return (lo >> s) | (wq[(b >> 2u) + 1u] << (32u - s));
}

fn ld_f16(b: u32) -> f32 {
    return unpack2x16float(ld_u16(b)).x;
}

fn sext8(v: u32) -> i32 {
    return bitcast<i32>(v << 24u) >> 24u;
}

// Four signed bytes (little-endian order) as floats.
fn i8x4(v: u32) -> vec4<f32> {
    return vec4<f32>(f32(sext8(v)), f32(sext8(v >> 8u)), f32(sext8(v >> 16u)), f32(sext8(v >> 24u)));
}

// Four unsigned bytes (little-endian order).
fn u8x4(v: u32) -> vec4<u32> {
    return vec4<u32>(v & 0xffu, (v >> 8u) & 0xffu, (v >> 16u) & 0xffu, v >> 24u);
}
