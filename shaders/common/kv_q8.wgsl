// The q8_0 KV cache's blocks (GpuKv; attention.wgsl, qk_prep.wgsl, rope_shift.wgsl with KV_Q8):
// 9 words per 32 values, the scale as an f32 rounded to f16 then 8 words of 4 packed i8,
// quantized as the CPU's `kv::quantize_q8_0` (llama.cpp's x86 `quantize_row_q8_0`): d = amax /
// 127, q = round_half_even(x * 127 / amax).

#include "common/f16.wgsl"
#include "common/q8.wgsl"

fn kv_q8_block(x: array<vec4<f32>, 8>) -> array<u32, 9> {
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let a = abs(x[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    var id = 0.0;
    if (amax != 0.0) {
        id = 127.0 / amax;
    }
    var out: array<u32, 9>;
    out[0] = bitcast<u32>(round_f16(amax / 127.0));
    for (var i = 0u; i < 8u; i++) {
        out[1u + i] = pack_i8x4(vec4<i32>(round(x[i] * id)));
    }
    return out;
}
