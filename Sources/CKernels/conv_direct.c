// Direct convolution (no padding, any kernel, stride and dilation) on AVX2 + FMA.
//
// The engine's hot layers are convolutions whose im2col matrix would be
// 36x larger than their input (the dense net's fc6: 6x6 taps, dilation 4).
// Copying it and letting sgemm pack it again cost a third of the layer's time;
// with stride 1 every tap of a row of output pixels reads a contiguous run of
// input, so this kernel loads its operands straight from the input planes.
//
// Blocking (a small GEMM, outputs x taps x pixels):
//   - a register tile of 6 output channels x NR = 16 pixels (12 ymm accumulators,
//     2 input vectors, 1 broadcast weight: 15 of the 16 registers; a 4 x 24 tile
//     needs all 16 and clang then shuffles registers every step, at half speed);
//     the last output channels go through 4-, 2- and 1-wide tiles;
//   - the reduction runs over chunks of whole input channels (about KC taps),
//     so a chunk's input rows stay in L1 while every block of output channels
//     passes over them; partial sums wait in a small buffer between chunks;
//   - in a panel of PANEL pixels the chunks run outermost, so each input row
//     is read as one run of PANEL floats; 1x1 layers use wider panels staged
//     through buffers (see tessera_conv_direct_rows).
// Measured on one Zen 3 core: 84 GFLOP/s for the dense fc6 (64 x 32·6·6, dilation 4),
// as fast as OpenBLAS's sgemm on the same core, without the im2col copy.
// Each output value is one FMA chain over k = (ci*kh + ky)*kw + kx in order,
// starting from 0, then + bias, then the activation: its rounding does not
// depend on where the pixel sits in the row, the chunk or the tile (masked
// lanes compute the same per-lane FMAs), so tiled maps equal untiled ones.

#include "CKernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define TESSERA_X86 1
#include <immintrin.h>
#endif

#ifndef PANEL_CHUNKS
#define PANEL_CHUNKS 4
#endif
#ifndef PACKED_PANEL_CHUNKS
#define PACKED_PANEL_CHUNKS 16
#endif
enum { MR = 6, NR = 16, KC = 128, PANEL = PANEL_CHUNKS * NR, PACKED_PANEL = PACKED_PANEL_CHUNKS * NR };

long tessera_claim(long *counter, long n) { return __atomic_fetch_add(counter, n, __ATOMIC_RELAXED); }

size_t tessera_conv_packed_count(int outputs, int k) { return (size_t)outputs * (size_t)k; }

// Width of the block of output channels that starts at m0: 6 while there are 6,
// then 4, 2, 1; but 8 left go as 4 + 4 (32 outputs: 6·4 + 4·2, no 2-wide tile,
// whose 4 accumulators cannot hide the FMA latency) and 7 as 4 + 2 + 1.
static int block_width(int outputs, int m0) {
    int left = outputs - m0;
    if (left == 8 || left == 7) return 4;
    return left >= 6 ? 6 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
}

void tessera_conv_pack_weights(const float *w, int outputs, int k, float *packed) {
    // Blocks of output channels (widths from block_width); block [m0, m0+r) is stored at
    // m0*k, k-major, r values per k.
    for (int m0 = 0; m0 < outputs;) {
        int r = block_width(outputs, m0);
        float *dst = packed + (size_t)m0 * k;
        for (int kk = 0; kk < k; kk++)
            for (int i = 0; i < r; i++) dst[(size_t)kk * r + i] = w[(size_t)(m0 + i) * k + kk];
        m0 += r;
    }
}

#ifdef TESSERA_X86

int tessera_conv_direct_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#define TARGET __attribute__((target("avx2,fma")))

// One register tile: outputs [m, m+R) (R = 1, 2, 4 or 6) x the 16 pixels at `in` (the
// chunk's first pixel), over reduction steps [t0, t1) whose input offsets from `in` are
// off[t]. Starts from the partial sums in `sums` unless `first`; stores them back
// unless `last`, else writes bias + activation to the output. Accumulators are named
// variables (an array of vectors makes clang shuffle registers every iteration).
#define LOAD2(p)                                                                                   \
    if (MASKED) {                                                                                  \
        i0 = _mm256_maskload_ps((p), m0v);                                                         \
        i1 = _mm256_maskload_ps((p) + 8, m1v);                                                     \
    } else {                                                                                       \
        i0 = _mm256_loadu_ps(p);                                                                   \
        i1 = _mm256_loadu_ps((p) + 8);                                                             \
    }
#define FMA2(j, w)                                                                                 \
    a##j##0 = _mm256_fmadd_ps(w, i0, a##j##0);                                                     \
    a##j##1 = _mm256_fmadd_ps(w, i1, a##j##1);
#define INIT2(j)                                                                                   \
    __m256 a##j##0 = _mm256_setzero_ps(), a##j##1 = a##j##0;                                       \
    if (!first) {                                                                                  \
        a##j##0 = _mm256_load_ps(sums + (m + j) * ss);                                             \
        a##j##1 = _mm256_load_ps(sums + (m + j) * ss + 8);                                         \
    }
#define FINISH2(j)                                                                                 \
    if (!last) {                                                                                   \
        _mm256_store_ps(sums + (m + j) * ss, a##j##0);                                             \
        _mm256_store_ps(sums + (m + j) * ss + 8, a##j##1);                                         \
    } else {                                                                                       \
        float *o = out + (size_t)(m + j) * out_plane;                                              \
        const __m256 b = _mm256_set1_ps(a->bias ? a->bias[m + j] : 0.0f);                          \
        emit(a, o, _mm256_add_ps(a##j##0, b), MASKED, m0v);                                        \
        emit(a, o + 8, _mm256_add_ps(a##j##1, b), MASKED, m1v);                                    \
    }

static inline __attribute__((always_inline)) TARGET void emit(const tessera_conv_args *a, float *o, __m256 x,
                                                              int masked, __m256i mask) {
    const __m256 zero = _mm256_setzero_ps();
    if (a->activation == 1) {
        x = _mm256_max_ps(x, zero);
    } else if (a->activation == 2) {
        x = _mm256_blendv_ps(_mm256_mul_ps(x, _mm256_set1_ps(a->slope)), x, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
    }
    if (masked) _mm256_maskstore_ps(o, mask, x);
    else _mm256_storeu_ps(o, x);
}

#define TILE_ARGS                                                                                  \
    const tessera_conv_args *a, const float *in, const int *off, const float *wp, int m, int t0, int t1, \
        int first, int last, float *sums, int ss, float *out, size_t out_plane, __m256i m0v, __m256i m1v

#define DEFINE_TILES(MASKED_)                                                                      \
    static inline __attribute__((always_inline)) TARGET void tile6_##MASKED_(TILE_ARGS) {          \
        enum { MASKED = MASKED_ };                                                                 \
        INIT2(0) INIT2(1) INIT2(2) INIT2(3) INIT2(4) INIT2(5)                                      \
        for (int t = t0; t < t1; t++) {                                                            \
            const float *p = in + off[t];                                                          \
            __m256 i0, i1;                                                                     \
            LOAD2(p)                                                                               \
            __m256 w0 = _mm256_broadcast_ss(wp);                                                   \
            FMA2(0, w0)                                                                            \
            __m256 w1 = _mm256_broadcast_ss(wp + 1);                                               \
            FMA2(1, w1)                                                                            \
            __m256 w2 = _mm256_broadcast_ss(wp + 2);                                               \
            FMA2(2, w2)                                                                            \
            __m256 w3 = _mm256_broadcast_ss(wp + 3);                                               \
            FMA2(3, w3)                                                                            \
            __m256 w4 = _mm256_broadcast_ss(wp + 4);                                               \
            FMA2(4, w4)                                                                            \
            __m256 w5 = _mm256_broadcast_ss(wp + 5);                                               \
            FMA2(5, w5)                                                                            \
            wp += 6;                                                                               \
        }                                                                                          \
        FINISH2(0) FINISH2(1) FINISH2(2) FINISH2(3) FINISH2(4) FINISH2(5)                        \
    }                                                                                              \
    static inline __attribute__((always_inline)) TARGET void tile4_##MASKED_(TILE_ARGS) {          \
        enum { MASKED = MASKED_ };                                                                 \
        INIT2(0) INIT2(1) INIT2(2) INIT2(3)                                                        \
        for (int t = t0; t < t1; t++) {                                                            \
            const float *p = in + off[t];                                                          \
            __m256 i0, i1;                                                                     \
            LOAD2(p)                                                                               \
            __m256 w0 = _mm256_broadcast_ss(wp);                                                   \
            FMA2(0, w0)                                                                            \
            __m256 w1 = _mm256_broadcast_ss(wp + 1);                                               \
            FMA2(1, w1)                                                                            \
            __m256 w2 = _mm256_broadcast_ss(wp + 2);                                               \
            FMA2(2, w2)                                                                            \
            __m256 w3 = _mm256_broadcast_ss(wp + 3);                                               \
            FMA2(3, w3)                                                                            \
            wp += 4;                                                                               \
        }                                                                                          \
        FINISH2(0) FINISH2(1) FINISH2(2) FINISH2(3)                                                \
    }                                                                                              \
    static inline __attribute__((always_inline)) TARGET void tile2_##MASKED_(TILE_ARGS) {          \
        enum { MASKED = MASKED_ };                                                                 \
        INIT2(0) INIT2(1)                                                                          \
        for (int t = t0; t < t1; t++) {                                                            \
            const float *p = in + off[t];                                                          \
            __m256 i0, i1;                                                                     \
            LOAD2(p)                                                                               \
            __m256 w0 = _mm256_broadcast_ss(wp);                                                   \
            FMA2(0, w0)                                                                            \
            __m256 w1 = _mm256_broadcast_ss(wp + 1);                                               \
            FMA2(1, w1)                                                                            \
            wp += 2;                                                                               \
        }                                                                                          \
        FINISH2(0) FINISH2(1)                                                                      \
    }                                                                                              \
    static inline __attribute__((always_inline)) TARGET void tile1_##MASKED_(TILE_ARGS) {          \
        enum { MASKED = MASKED_ };                                                                 \
        INIT2(0)                                                                                   \
        for (int t = t0; t < t1; t++) {                                                            \
            const float *p = in + off[t];                                                          \
            __m256 i0, i1;                                                                     \
            LOAD2(p)                                                                               \
            __m256 w0 = _mm256_broadcast_ss(wp);                                                   \
            FMA2(0, w0)                                                                            \
            wp += 1;                                                                               \
        }                                                                                          \
        FINISH2(0)                                                                                 \
    }

DEFINE_TILES(0)
DEFINE_TILES(1)

static inline __attribute__((always_inline)) TARGET void chunk(
    const tessera_conv_args *a, int masked, const float *in, const int *off, int t0, int t1, int first, int last,
    float *sums, int ss, float *out, size_t out_plane, __m256i m0v, __m256i m1v) {
    const int k = a->channels * a->kh * a->kw, M = a->outputs;
    for (int m = 0; m < M;) {
        int r = block_width(M, m);
        // This block's packed weights start at m*k, r values per k; skip to step t0.
        const float *wp = a->packed + (size_t)m * k + (size_t)t0 * r;
        if (r == 6) {
            if (masked) tile6_1(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, m0v, m1v);
            else tile6_0(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, m0v, m1v);
        } else if (r == 4) {
            if (masked) tile4_1(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, m0v, m1v);
            else tile4_0(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, m0v, m1v);
        } else if (r == 2) {
            if (masked) tile2_1(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, m0v, m1v);
            else tile2_0(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, m0v, m1v);
        } else {
            if (masked) tile1_1(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, m0v, m1v);
            else tile1_0(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, m0v, m1v);
        }
        m += r;
    }
}

// d[i] = s[i * sw] for i < len: a panel's run of one tap of a strided convolution.
// Stride 2 (every strided layer of fcn-batchnorm) deinterleaves with shuffles; the
// last load is masked so nothing past s[(len - 1) * 2] is read.
static inline __attribute__((always_inline)) TARGET void gather(float *d, const float *s, size_t len, long sw) {
    size_t i = 0;
    if (sw == 2) {
        const __m256i seven = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0);
        for (; i + 8 <= len; i += 8) {
            const __m256 a = _mm256_loadu_ps(s + 2 * i), b = _mm256_maskload_ps(s + 2 * i + 8, seven);
            // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6]
            const __m256 e = _mm256_shuffle_ps(a, b, 0x88);
            _mm256_storeu_ps(d + i, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xd8)));
        }
    }
    for (; i < len; i++) d[i] = s[i * sw];
}

TARGET void tessera_conv_direct_rows(const tessera_conv_args *a, long y0, long y1) {
    const int taps = a->kh * a->kw, k = a->channels * taps, M = a->outputs;
    const long sh = a->sh > 1 ? a->sh : 1, sw = a->sw > 1 ? a->sw : 1;
    const size_t out_plane = (size_t)a->out_h * (size_t)a->out_w;
    // Chunks of whole input channels, about KC reduction steps each.
    const int step = (KC / taps < 1 ? 1 : KC / taps) * taps;
    // 1x1 convolutions read one run from each of many planes and write one to each
    // of many (64 and 64 for fc7): more streams than the prefetcher follows, so
    // every line is a demand miss and the layer ran at half speed. For them a panel
    // is wider, its input runs are first copied into one buffer, and its outputs
    // are written to `sums` and copied out as long runs: a few % more copying.
    // Strided convolutions (sw > 1) stage their input the same way: each tap's pixels,
    // sw apart in the input row, are gathered into one contiguous run of the panel (an
    // im2col of one panel that stays in L1/L2), so the register tiles load contiguous
    // vectors as for stride 1. A stride along the rows only moves the input row.
    // Each lane still computes the same values, in the same order.
    const int pack_out = taps == 1, pack_in = pack_out || sw > 1;
    const int pw = pack_out ? PACKED_PANEL : PANEL;
    // Partial sums (and, when packing outputs, the finished outputs) of a panel: M rows of pw.
    float *sums = aligned_alloc(32, sizeof(float) * (size_t)pw * (size_t)(M + MR));
    int *off = malloc(sizeof(int) * (size_t)k);
    float *panel = pack_in ? aligned_alloc(32, sizeof(float) * (size_t)pw * (size_t)step) : NULL;
    int *poff = pack_in ? malloc(sizeof(int) * (size_t)k) : NULL;
    if (!sums || !off || (pack_in && (!panel || !poff))) abort();
    // Input offset of reduction step t = (ci*kh + ky)*kw + kx from the output pixel's position.
    for (int ci = 0, t = 0; ci < a->channels; ci++)
        for (int ky = 0; ky < a->kh; ky++)
            for (int kx = 0; kx < a->kw; kx++, t++)
                off[t] = (int)(((long)ci * a->in_h + (long)ky * a->dh) * a->in_w + (long)kx * a->dw);
    for (int t = 0; pack_in && t < k; t++) poff[t] = (t % step) * pw;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i all = _mm256_set1_epi32(-1);
    for (long y = y0; y < y1; y++) {
        const float *in_row = a->input + (size_t)(y * sh) * a->in_w;
        float *out_row = a->output + (size_t)y * a->out_w;
        // Panels of up to pw pixels; in each, the reduction chunks run outermost so each
        // chunk's input rows are read as runs of pw floats.
        for (long p0 = 0; p0 < a->out_w; p0 += pw) {
            const long p1 = p0 + pw < a->out_w ? p0 + pw : a->out_w;
            const size_t len = (size_t)(p1 - p0);
            for (int t0 = 0; t0 < k; t0 += step) {
                const int t1 = t0 + step < k ? t0 + step : k;
                const int first = t0 == 0, last = t1 == k;
                const float *src = in_row + p0;
                const int *so = off;
                float *dst = out_row + p0;
                size_t dst_plane = out_plane;
                if (pack_in) {
                    if (sw == 1) {
                        for (int t = t0; t < t1; t++) memcpy(panel + (size_t)(t - t0) * pw, in_row + p0 + off[t], sizeof(float) * len);
                    } else {
                        for (int t = t0; t < t1; t++)
                            gather(panel + (size_t)(t - t0) * pw, in_row + p0 * sw + off[t], len, sw);
                    }
                    src = panel;
                    so = poff;
                }
                if (pack_out) {
                    dst = sums;
                    dst_plane = (size_t)pw;
                }
                for (long x0 = p0; x0 < p1; x0 += NR) {
                    const int n = p1 - x0 < NR ? (int)(p1 - x0) : NR;
                    const long dx = x0 - p0;
                    if (n < NR) {
                        __m256i m0v = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
                        __m256i m1v = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - 8), lanes);
                        chunk(a, 1, src + dx, so, t0, t1, first, last, sums + dx, pw, dst + dx, dst_plane, m0v, m1v);
                    } else {
                        chunk(a, 0, src + dx, so, t0, t1, first, last, sums + dx, pw, dst + dx, dst_plane, all, all);
                    }
                }
            }
            if (pack_out)
                for (int m = 0; m < M; m++) memcpy(out_row + p0 + (size_t)m * out_plane, sums + (size_t)m * pw, sizeof(float) * len);
        }
    }
    free(poff);
    free(panel);
    free(off);
    free(sums);
}

#else

int tessera_conv_direct_available(void) { return 0; }
void tessera_conv_direct_rows(const tessera_conv_args *a, long y0, long y1) { (void)a; (void)y0; (void)y1; abort(); }

#endif
