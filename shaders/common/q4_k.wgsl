// block_q4_K (144 bytes, 256 values): f16 d, f16 dmin; u8 scales[12]; u8 qs[128]. Element
// e = 64c + 32h + l: nibble h of qs[32c + l], sub-block 2c + h; value = d * sc * q - dmin * m.
#include "common/k_scale_min.wgsl"
fn dq4(rowb: u32, e: u32) -> vec4<f32> {
    let blk = rowb + (e / 256u) * 144u;
    let r = e % 256u;
    let c = r / 64u;
    let h = (r % 64u) / 32u;
    let l = r % 32u;
    let q = (ld_u32(blk + 16u + 32u * c + l) >> (4u * h)) & 0x0f0f0f0fu;
    let sm = k_scale_min(blk + 4u, 2u * c + h);
    return ld_f16(blk) * sm.x * vec4<f32>(u8x4(q)) - ld_f16(blk + 2u) * sm.y;
}
