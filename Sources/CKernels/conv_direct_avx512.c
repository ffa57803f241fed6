// Direct convolution (no padding, any stride) on AVX-512F: the AVX2 kernel of
// conv_direct.c with 16-lane vectors and a register tile that uses the 32 zmm
// registers. Same arithmetic, lane for lane: each output value is one FMA chain
// over k = (ci*kh + ky)*kw + kx in order, starting from +0, then + bias, then the
// activation (max(x, 0), or x > 0 ? x : x*slope chosen by a compare), so its maps
// equal the AVX2 kernel's bit for bit (benchmarks/conv_direct_check.c checks both
// against a scalar fmaf chain over 600 shapes; Tests/EngineTests checks them in the engine).
//
// Blocking, as in the AVX2 kernel (a small GEMM, outputs x taps x pixels):
//   - a register tile of up to MR512 = 12 output channels x NP512 = 1 vector of 16
//     pixels: 12 accumulators, 1 input vector, each weight a broadcast memory operand
//     of its FMA, so a reduction step is 1 load + 12 FMAs (AVX2: 2 loads, 6 broadcasts,
//     12 FMAs for half the work). Output channels are split into blocks as even as
//     possible (64 = 6 blocks of 11 or 10, 32 = 11+11+10): no narrow leftover tile,
//     whose few independent FMA chains cannot hide their latency;
//   - the reduction runs over chunks of whole input channels (about KC512 taps) so a
//     chunk's input rows stay in L1 while every block of outputs passes over them;
//   - panels of PANEL512 pixels, chunks outermost; 1x1 layers use wider panels staged
//     through buffers (see conv_direct.c for why).
// Tails of a row use AVX-512's masked loads and stores (a pixel's lane does not change
// its value).
//
// Measured on one Zen 4 core (AMD EPYC, 2-core VM; CPU time, best of 41; FMA peak
// 115 GFLOP/s, the same for 8- and 16-lane FMAs, since Zen 4 splits a 512-bit FMA in two):
// dense fc6 (64 x 32*6*6, dilation 4) 108-110 GFLOP/s against AVX2's 100-104, conv1/conv2
// +8%, fc7 +1-7%. 14x16, 10x16, 14x32, 8x32 and 6x32 tiles, KC 192 and 128-pixel panels
// all measured within 3% of this one (-DMR512=14 -DNP512=2 etc. build them); on Zen 4
// the gain is fewer instructions per FMA, not wider FMAs.
#include "CKernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define TESSERA_X86 1
#include <immintrin.h>
#endif

#ifndef MR512
#define MR512 12
#endif
#ifndef NP512
#define NP512 1
#endif
#ifndef KC512
#define KC512 128
#endif
#ifndef PANEL512
#define PANEL512 64
#endif
#ifndef PACKED_PANEL512
#define PACKED_PANEL512 256
#endif
enum { NR512 = 16 * NP512 };

// Blocks of output channels: as many as MR512-wide tiles need, widths as even as possible
// (the first `outputs % blocks` one wider). Block b starts at block_start(b).
static int blocks512(int outputs) { return (outputs + MR512 - 1) / MR512; }
static int block_start512(int outputs, int b) {
    const int n = blocks512(outputs), base = outputs / n, wide = outputs % n;
    return b * base + (b < wide ? b : wide);
}

void tessera_conv_pack_weights_avx512(const float *w, int outputs, int k, float *packed) {
    // Block [m0, m0+r) is stored at m0*k, k-major, r values per k.
    for (int b = 0, n = blocks512(outputs); b < n; b++) {
        const int m0 = block_start512(outputs, b), r = block_start512(outputs, b + 1) - m0;
        float *dst = packed + (size_t)m0 * k;
        for (int kk = 0; kk < k; kk++)
            for (int i = 0; i < r; i++) dst[(size_t)kk * r + i] = w[(size_t)(m0 + i) * k + kk];
    }
}

#ifdef TESSERA_X86

int tessera_conv_direct_avx512_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

#define TARGET512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))

INLINE TARGET512 __m512 emit512(const tessera_conv_args *a, __m512 x) {
    const __m512 zero = _mm512_setzero_ps();
    if (a->activation == 1) {
        x = _mm512_max_ps(x, zero);
    } else if (a->activation == 2) {
        const __mmask16 pos = _mm512_cmp_ps_mask(x, zero, _CMP_GT_OQ);
        x = _mm512_mask_blend_ps(pos, _mm512_mul_ps(x, _mm512_set1_ps(a->slope)), x);
    }
    return x;
}

// Accumulator j (0..13), vector v (0..1): named variables, not an array (an array of
// vectors makes clang spill). R and P are constants after inlining: unused ones vanish.
#define FOR14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)
#define DECL(j) __m512 c##j##_0 = _mm512_setzero_ps(), c##j##_1 = c##j##_0;
#define INIT(j)                                                                                    \
    if (R > j && !first) {                                                                         \
        c##j##_0 = _mm512_load_ps(sums + (m + j) * ss);                                            \
        if (P > 1) c##j##_1 = _mm512_load_ps(sums + (m + j) * ss + 16);                            \
    }
#define STEP(j)                                                                                    \
    if (R > j) {                                                                                   \
        const __m512 w = _mm512_set1_ps(wp[j]);                                                    \
        c##j##_0 = _mm512_fmadd_ps(w, i0, c##j##_0);                                               \
        if (P > 1) c##j##_1 = _mm512_fmadd_ps(w, i1, c##j##_1);                                    \
    }
#define FINISH(j)                                                                                  \
    if (R > j) {                                                                                   \
        if (!last) {                                                                               \
            _mm512_store_ps(sums + (m + j) * ss, c##j##_0);                                        \
            if (P > 1) _mm512_store_ps(sums + (m + j) * ss + 16, c##j##_1);                        \
        } else {                                                                                   \
            float *o = out + (size_t)(m + j) * out_plane;                                          \
            const __m512 b = _mm512_set1_ps(a->bias ? a->bias[m + j] : 0.0f);                      \
            const __m512 y0 = emit512(a, _mm512_add_ps(c##j##_0, b));                              \
            if (masked) _mm512_mask_storeu_ps(o, k0, y0);                                          \
            else _mm512_storeu_ps(o, y0);                                                          \
            if (P > 1) {                                                                           \
                const __m512 y1 = emit512(a, _mm512_add_ps(c##j##_1, b));                          \
                if (masked) _mm512_mask_storeu_ps(o + 16, k1, y1);                                 \
                else _mm512_storeu_ps(o + 16, y1);                                                 \
            }                                                                                      \
        }                                                                                          \
    }

#define TILE_ARGS512                                                                               \
    const tessera_conv_args *a, const float *in, const int *off, const float *wp, int m, int t0, int t1, \
        int first, int last, float *sums, int ss, float *out, size_t out_plane, __mmask16 k0, __mmask16 k1

// One register tile: outputs [m, m+R) x P*16 pixels at `in` (the chunk's first pixel),
// over reduction steps [t0, t1) whose input offsets from `in` are off[t]. Starts from
// the partial sums in `sums` unless `first`; stores them back unless `last`, else
// writes bias + activation to the output.
INLINE TARGET512 void tile512(TILE_ARGS512, const int R, const int P, const int masked) {
    FOR14(DECL)
    FOR14(INIT)
    for (int t = t0; t < t1; t++) {
        const float *p = in + off[t];
        const __m512 i0 = masked ? _mm512_maskz_loadu_ps(k0, p) : _mm512_loadu_ps(p);
        const __m512 i1 = P < 2 ? i0 : masked ? _mm512_maskz_loadu_ps(k1, p + 16) : _mm512_loadu_ps(p + 16);
        FOR14(STEP)
        wp += R;
    }
    FOR14(FINISH)
}

#define TILE_FN(R, P, MASKED)                                                                      \
    static TARGET512 __attribute__((noinline)) void tile512_##R##_##P##_##MASKED(TILE_ARGS512) {   \
        tile512(a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, k0, k1, R, P, MASKED); \
    }
// Only the tiles this build can call: R <= MR512, P <= NP512 (each is about 1 KB of code).
#if NP512 > 1
#define TILE_FNS(R) TILE_FN(R, 1, 0) TILE_FN(R, 1, 1) TILE_FN(R, 2, 0) TILE_FN(R, 2, 1)
#define ROW(R) {tile512_##R##_1_0, tile512_##R##_1_1, tile512_##R##_2_0, tile512_##R##_2_1},
#else
#define TILE_FNS(R) TILE_FN(R, 1, 0) TILE_FN(R, 1, 1)
#define ROW(R) {tile512_##R##_1_0, tile512_##R##_1_1},
#endif
typedef void (*tile_fn)(TILE_ARGS512);
// tiles[R - 1][(P - 1) * 2 + masked]
TILE_FNS(1) TILE_FNS(2) TILE_FNS(3) TILE_FNS(4)
#if MR512 <= 4
static const tile_fn tiles[][2 * NP512] = {ROW(1) ROW(2) ROW(3) ROW(4)};
#elif MR512 <= 8
TILE_FNS(5) TILE_FNS(6) TILE_FNS(7) TILE_FNS(8)
static const tile_fn tiles[][2 * NP512] = {ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7) ROW(8)};
#elif MR512 <= 12
TILE_FNS(5) TILE_FNS(6) TILE_FNS(7) TILE_FNS(8) TILE_FNS(9) TILE_FNS(10) TILE_FNS(11) TILE_FNS(12)
static const tile_fn tiles[][2 * NP512] = {ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6)
                                           ROW(7) ROW(8) ROW(9) ROW(10) ROW(11) ROW(12)};
#else
TILE_FNS(5) TILE_FNS(6) TILE_FNS(7) TILE_FNS(8) TILE_FNS(9) TILE_FNS(10) TILE_FNS(11) TILE_FNS(12)
TILE_FNS(13) TILE_FNS(14)
static const tile_fn tiles[][2 * NP512] = {ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
                                           ROW(8) ROW(9) ROW(10) ROW(11) ROW(12) ROW(13) ROW(14)};
#endif

_Static_assert(MR512 >= 1 && MR512 <= 14 && NP512 >= 1 && NP512 <= 2, "register tile");
_Static_assert(PANEL512 % NR512 == 0 && PACKED_PANEL512 % NR512 == 0, "panel of whole tiles");

// Every block of output channels over one chunk of reduction steps [t0, t1) and the
// n <= NR512 pixels at `in`.
static TARGET512 void chunk512(const tessera_conv_args *a, int n, const float *in, const int *off, int t0,
                               int t1, int first, int last, float *sums, int ss, float *out, size_t out_plane) {
    const int k = a->channels * a->kh * a->kw, M = a->outputs;
    const int P = n > 16 || NP512 == 1 ? NP512 : 1, masked = n < 16 * P;
    const __mmask16 k0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
    const __mmask16 k1 = n >= 32 ? 0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    for (int b = 0, nb = blocks512(M); b < nb; b++) {
        const int m = block_start512(M, b), r = block_start512(M, b + 1) - m;
        // This block's packed weights start at m*k, r values per k; skip to step t0.
        const float *wp = a->packed + (size_t)m * k + (size_t)t0 * r;
        tiles[r - 1][(P - 1) * 2 + masked](a, in, off, wp, m, t0, t1, first, last, sums, ss, out, out_plane, k0, k1);
    }
}

// d[i] = s[i * sw] for i < len: a panel's run of one tap of a strided convolution.
// Stride 2 (every strided layer of fcn-batchnorm) deinterleaves with one permute; the
// last load is masked so nothing past s[(len - 1) * 2] is read. Other strides copy
// one value at a time: vectorised, clang made the loop a vgatherdps, slower on Zen 4.
INLINE TARGET512 void gather(float *d, const float *s, size_t len, long sw) {
    size_t i = 0;
    if (sw == 2) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for (; i + 16 <= len; i += 16) {
            const __m512 a = _mm512_loadu_ps(s + 2 * i), b = _mm512_maskz_loadu_ps(0x7fff, s + 2 * i + 16);
            _mm512_storeu_ps(d + i, _mm512_permutex2var_ps(a, even, b));
        }
    }
#pragma clang loop vectorize(disable)
    for (; i < len; i++) d[i] = s[i * sw];
}

TARGET512 void tessera_conv_direct_rows_avx512(const tessera_conv_args *a, long y0, long y1) {
    const int taps = a->kh * a->kw, k = a->channels * taps, M = a->outputs;
    const long sh = a->sh > 1 ? a->sh : 1, sw = a->sw > 1 ? a->sw : 1;
    const size_t out_plane = (size_t)a->out_h * (size_t)a->out_w;
    // Chunks of whole input channels, about KC512 reduction steps each.
    const int step = (KC512 / taps < 1 ? 1 : KC512 / taps) * taps;
    // 1x1 layers: wider panels, input runs copied into one buffer, outputs written to
    // `sums` and copied out as long runs; strided layers (sw > 1): each tap's pixels
    // gathered into one contiguous run of the panel (see conv_direct.c).
    const int pack_out = taps == 1, pack_in = pack_out || sw > 1;
    const int pw = pack_out ? PACKED_PANEL512 : PANEL512;
    float *sums = aligned_alloc(64, sizeof(float) * (size_t)pw * (size_t)(M + MR512));
    int *off = malloc(sizeof(int) * (size_t)k);
    float *panel = pack_in ? aligned_alloc(64, sizeof(float) * (size_t)pw * (size_t)step) : NULL;
    int *poff = pack_in ? malloc(sizeof(int) * (size_t)k) : NULL;
    if (!sums || !off || (pack_in && (!panel || !poff))) abort();
    // Input offset of reduction step t = (ci*kh + ky)*kw + kx from the output pixel's position.
    for (int ci = 0, t = 0; ci < a->channels; ci++)
        for (int ky = 0; ky < a->kh; ky++)
            for (int kx = 0; kx < a->kw; kx++, t++)
                off[t] = (int)(((long)ci * a->in_h + (long)ky * a->dh) * a->in_w + (long)kx * a->dw);
    for (int t = 0; pack_in && t < k; t++) poff[t] = (t % step) * pw;
    for (long y = y0; y < y1; y++) {
        const float *in_row = a->input + (size_t)(y * sh) * a->in_w;
        float *out_row = a->output + (size_t)y * a->out_w;
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
                for (long x0 = p0; x0 < p1; x0 += NR512) {
                    const int n = p1 - x0 < NR512 ? (int)(p1 - x0) : NR512;
                    const long dx = x0 - p0;
                    chunk512(a, n, src + dx, so, t0, t1, first, last, sums + dx, pw, dst + dx, dst_plane);
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

int tessera_conv_direct_avx512_available(void) { return 0; }
void tessera_conv_direct_rows_avx512(const tessera_conv_args *a, long y0, long y1) { (void)a; (void)y0; (void)y1; abort(); }

#endif
