// Byte-addressed little-endian reads from raw GGUF bytes bound as `wq: array<u32>`.
// GGUF blocks are not 4-byte aligned (Q8_0 is 34 bytes, Q6_K 210), so every quant helper reads
// through these. `b` is a byte offset into the bound buffer. Every weight word is loaded by
// `wq_at`; with TRACE (tests only) the first TRACE_LOADS loads of the first 32 invocations of
// workgroup 0 record their word index in `trace` ([32, TRACE_LOADS], u32::MAX where none), so a
// test can count the memory sectors one load of 32 lanes touches (coalescing).

#ifdef TRACE
@group(0) @binding(15) var<storage, read_write> trace: array<u32>;
const TRACE_LOADS: u32 = 16u;
var<private> trace_lane: u32 = 0xffffffffu;
var<private> trace_n: u32 = 0u;
fn trace_begin(wg: u32, lid: u32) {
    if (wg == 0u && lid < 32u) {
        trace_lane = lid;
    }
}
fn wq_at(i: u32) -> u32 {
    if (trace_lane < 32u && trace_n < TRACE_LOADS) {
        trace[trace_lane * TRACE_LOADS + trace_n] = i;
        trace_n++;
    }
    return wq[i];
}
#else
fn wq_at(i: u32) -> u32 {
    return wq[i];
}
#endif

fn ld_u8(b: u32) -> u32 {
    return (wq_at(b >> 2u) >> ((b & 3u) * 8u)) & 0xffu;
}

// `b` must be even (every f16 / u16 field of a ggml block is).
fn ld_u16(b: u32) -> u32 {
    return (wq_at(b >> 2u) >> ((b & 2u) * 8u)) & 0xffffu;
}

// Any alignment: the 4 bytes at b..b+3, possibly straddling two words.
fn ld_u32(b: u32) -> u32 {
    let s = (b & 3u) * 8u;
    let lo = wq_at(b >> 2u);
    if (s == 0u) {
        return lo;
    }
    return (lo >> s) | (wq_at((b >> 2u) + 1u) << (32u - s));
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
