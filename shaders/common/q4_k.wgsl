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

#ifdef DOT_BLK
// The dot product of one whole block (byte `blk`) with activations xv(xi..xi+255): per pair of
// sub-blocks one 32-byte run of qs (low nibbles: sub-block 2c, high: 2c + 1), summed as
// d * sc * sum(q * x) - dmin * m * sum(x).
fn dot_blk(blk: u32, xi: u32) -> f32 {
    let d = ld_f16(blk);
    let dmin = ld_f16(blk + 2u);
    var sum = 0.0;
    for (var c = 0u; c < 4u; c++) {
        let s0 = k_scale_min(blk + 4u, 2u * c);
        let s1 = k_scale_min(blk + 4u, 2u * c + 1u);
        var a0 = 0.0;
        var a1 = 0.0;
        var x0 = vec4<f32>(0.0);
        var x1 = vec4<f32>(0.0);
        for (var l = 0u; l < 32u; l += 4u) {
            let q = ld_u32(blk + 16u + 32u * c + l);
            let xa = xv(xi + 64u * c + l);
            let xb = xv(xi + 64u * c + 32u + l);
            a0 += dot(vec4<f32>(u8x4(q & 0x0f0f0f0fu)), xa);
            a1 += dot(vec4<f32>(u8x4((q >> 4u) & 0x0f0f0f0fu)), xb);
            x0 += xa;
            x1 += xb;
        }
        let sx0 = x0.x + x0.y + x0.z + x0.w;
        let sx1 = x1.x + x1.y + x1.z + x1.w;
        sum += d * (s0.x * a0 + s1.x * a1) - dmin * (s0.y * sx0 + s1.y * sx1);
    }
    return sum;
}
const DOT_BLK_BS: u32 = 256u;
const DOT_BLK_TS: u32 = 144u;
#endif
