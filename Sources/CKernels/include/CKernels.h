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

#endif
