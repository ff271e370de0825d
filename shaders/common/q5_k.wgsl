// block_q5_K (176 bytes, 256 values): f16 d, f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128].
// As Q4_K, plus a 5th bit: bit (2c + h) of qh[l]; value = d * sc * (q + 16 hbit) - dmin * m.
#include "common/k_scale_min.wgsl"
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 256u) * 176u;
    let r = e % 256u;
    let c = r / 64u;
    let h = (r % 64u) / 32u;
    let l = r % 32u;
    let lo = (ld_u32(blk + 48u + 32u * c + l) >> (4u * h)) & 0x0f0f0f0fu;
    let hb = (ld_u32(blk + 16u + l) >> (2u * c + h)) & 0x01010101u;
    let sm = k_scale_min(blk + 4u, 2u * c + h);
    return ld_f16(blk) * sm.x * vec4<f32>(u8x4(lo + hb * 16u)) - ld_f16(blk + 2u) * sm.y;
}
