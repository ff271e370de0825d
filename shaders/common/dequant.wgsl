// Decode helpers for the weight type named by one `W_<TYPE>` define: `dq4(row_byte, e)` gives
// elements e..e+3 (e a multiple of 4) of the row starting at byte `row_byte`, `dq1` one element.
// Every format reads raw GGUF bytes from `wq: array<u32>`.
#include "common/bytes.wgsl"
#ifdef W_F32
#include "common/f32.wgsl"
#endif
#ifdef W_F16
#include "common/f16w.wgsl"
#endif
#ifdef W_BF16
#include "common/bf16.wgsl"
#endif
#ifdef W_QUANT
#ifdef W_Q4_0
#include "common/q4_0.wgsl"
#endif
#ifdef W_Q4_1
#include "common/q4_1.wgsl"
#endif
#ifdef W_Q5_0
#include "common/q5_0.wgsl"
#endif
#ifdef W_Q5_1
#include "common/q5_1.wgsl"
#endif
#ifdef W_Q8_0
#include "common/q8_0.wgsl"
#endif
#ifdef W_Q8_1
#include "common/q8_1.wgsl"
#endif
#ifdef W_Q2_K
#include "common/q2_k.wgsl"
#endif
#ifdef W_Q3_K
#include "common/q3_k.wgsl"
#endif
#ifdef W_Q4_K
#include "common/q4_k.wgsl"
#endif
#ifdef W_Q5_K
#include "common/q5_k.wgsl"
#endif
#ifdef W_Q6_K
#include "common/q6_k.wgsl"
#endif
#ifdef W_Q8_K
#include "common/q8_k.wgsl"
#endif
// Block sizes are multiples of 4, so a group of 4 never straddles blocks.
fn dq1(rowb: u32, e: u32) -> f32 {
    return dq4(rowb, e & ~3u)[e & 3u];
}
#endif
