#include "CKernels.h"

#include <math.h>

void tessera_lrn_scale_beta075(const float *restrict src, const float *restrict acc, float *restrict dst,
                               size_t n, float k, float alpha_over_n) {
    for (size_t i = 0; i < n; i++) {
        float a = acc[i] > 0.0f ? acc[i] : 0.0f;
        float r = sqrtf(k + alpha_over_n * a);
        dst[i] = src[i] * (1.0f / (r * sqrtf(r)));
    }
}
