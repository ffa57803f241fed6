#ifndef TESSERA_CKERNELS_H
#define TESSERA_CKERNELS_H

#include <stddef.h>

/// dst[i] = src[i] * (k + alpha_over_n * max(0, acc[i]))^-0.75, computed as
/// 1 / (r * sqrt(r)) with r = sqrt(k + alpha_over_n * a): the same IEEE
/// operations, in the same order, as the engine's scalar Swift loop. In C
/// because Swift's squareRoot() keeps libm's errno path, which stops the loop
/// from vectorising; built with -fno-math-errno and without FMA contraction.
void tessera_lrn_scale_beta075(const float *src, const float *acc, float *dst, size_t n, float k,
                               float alpha_over_n);

/// Atomically adds `n` to `*counter` and returns its previous value (work claiming).
long tessera_claim(long *counter, long n);

/// Direct convolution, no padding, any stride (see conv_direct.c).
typedef struct {
    const float *input;   ///< `channels` planes of in_h x in_w
    long in_h, in_w;
    int channels;
    const float *packed;  ///< weights from tessera_conv_pack_weights
    int outputs;
    const float *bias;    ///< one per output, or NULL
    int activation;       ///< 0 none, 1 ReLU, 2 leaky ReLU with `slope`
    float slope;
    float *output;        ///< `outputs` planes of out_h x out_w
    long out_h, out_w;    ///< out_h = (in_h - (kh-1)*dh - 1)/sh + 1, out_w likewise
    int kh, kw, dh, dw;
    int sh, sw;           ///< strides; 0 counts as 1
} tessera_conv_args;

/// Non-zero when this CPU runs tessera_conv_direct_rows (x86-64 with AVX2 and FMA).
int tessera_conv_direct_available(void);
/// Floats tessera_conv_pack_weights writes for `outputs` x `k` weights.
size_t tessera_conv_packed_count(int outputs, int k);
/// Reorders row-major `outputs` x `k` weights (k = channels*kh*kw) for the kernel.
void tessera_conv_pack_weights(const float *w, int outputs, int k, float *packed);
/// Output rows [y0, y1) of every output channel.
void tessera_conv_direct_rows(const tessera_conv_args *args, long y0, long y1);

/// The same convolution on AVX-512F (conv_direct_avx512.c): a larger register tile,
/// outputs equal to tessera_conv_direct_rows's bit for bit. Its weights are packed
/// by tessera_conv_pack_weights_avx512 (other blocks, the same count of floats).
/// Non-zero when this CPU runs it (x86-64 with AVX-512F).
int tessera_conv_direct_avx512_available(void);
void tessera_conv_pack_weights_avx512(const float *w, int outputs, int k, float *packed);
void tessera_conv_direct_rows_avx512(const tessera_conv_args *args, long y0, long y1);

#endif
