// The gate activation of a GLU (glu.wgsl, linear.wgsl with GLU): GELU (tanh approximation,
// computed as ggml's CPU backend does: input rounded to f16, result rounded to f16; identity
// above 10, zero below -10) with the define GELU, else SiLU.

#include "common/math.wgsl"
#include "common/f16.wgsl"

fn act(x: f32) -> f32 {
#ifdef GELU
    if (x <= -10.0) {
        return 0.0;
    }
    if (x >= 10.0) {
        return x;
    }
    return round_f16(gelu_f32(round_f16(x)));
#else
    return silu(x);
#endif
}
