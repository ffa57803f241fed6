// Standalone check and benchmark of the direct convolution kernels (Sources/CKernels),
// outside SwiftPM: the AVX-512 kernel against the AVX2 kernel bit for bit, both
// against a scalar fmaf chain in tap order (also bit for bit), over many shapes, strides and
// thread bands; then GFLOP/s of both on the dense seed net's convolutions.
//
//   clang -O3 -fno-math-errno -ffp-contract=off -ISources/CKernels/include \
//     benchmarks/conv_direct_check.c Sources/CKernels/conv_direct*.c -lm -lpthread -o /tmp/conv_check
//   /tmp/conv_check [check|bench|both] [threads]
#include "CKernels.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
// CPU seconds of this process (all threads): on a shared machine wall time measures the others too.
static double cpu(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

// This core's FMA peak in GFLOP/s of CPU time: 12 independent chains of 8-lane FMAs
// (on Zen 4 16-lane FMAs have the same throughput, measured 115 GFLOP/s both).
__attribute__((target("avx2,fma"), noinline)) static double fma_peak(void) {
    const long n = 20000000;
    volatile float one = 0.9999f;
    __m256 b = _mm256_set1_ps(one), c = _mm256_set1_ps(1e-9f);
#define A(i) __m256 a##i = _mm256_set1_ps((float)i);
#define F(i) a##i = _mm256_fmadd_ps(b, c, a##i);
#define S(i) s = _mm256_add_ps(s, a##i);
#define R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
    R12(A)
    const double t = cpu();
    for (long i = 0; i < n; i++) { R12(F) }
    const double dt = cpu() - t;
    __m256 s = _mm256_setzero_ps();
    R12(S)
    volatile float sink = s[0];
    (void)sink;
    return 12.0 * 16.0 * (double)n / dt * 1e-9;
}

static unsigned seed = 12345;
static float rnd(void) {
    seed = seed * 1664525u + 1013904223u;
    return (float)(seed >> 8) / 16777216.0f * 2 - 1;
}

typedef struct {
    int cin, cout, h, w, kh, kw, dh, dw, act, bias, sh, sw;  // sh, sw: strides (0 = 1)
} shape;

typedef struct {
    float *in, *w, *b, *pk2, *pk512;
    shape s;
    long oh, ow;
} problem;

static problem make(shape s, int specials) {
    problem p = {.s = s};
    const long sh = s.sh > 1 ? s.sh : 1, sw = s.sw > 1 ? s.sw : 1;
    p.oh = (s.h - (long)(s.kh - 1) * s.dh - 1) / sh + 1;
    p.ow = (s.w - (long)(s.kw - 1) * s.dw - 1) / sw + 1;
    const int k = s.cin * s.kh * s.kw;
    const size_t nin = (size_t)s.cin * s.h * s.w, nw = (size_t)s.cout * k;
    p.in = malloc(sizeof(float) * nin);
    p.w = malloc(sizeof(float) * nw);
    p.b = malloc(sizeof(float) * (size_t)s.cout);
    p.pk2 = malloc(sizeof(float) * tessera_conv_packed_count(s.cout, k));
    p.pk512 = malloc(sizeof(float) * tessera_conv_packed_count(s.cout, k));
    for (size_t i = 0; i < nin; i++) p.in[i] = rnd();
    for (size_t i = 0; i < nw; i++) p.w[i] = rnd();
    for (int i = 0; i < s.cout; i++) p.b[i] = rnd();
    if (specials) {
        // Signed zeros, tiny and huge values: the same per-lane operations must agree on them too.
        const float sp[] = {-0.0f, 0.0f, 1e-40f, -1e-40f, 3e38f, -3e38f, 1e-20f};
        for (size_t i = 0; i < nin; i += 7) p.in[i] = sp[(i / 7) % 7];
        for (size_t i = 0; i < nw; i += 5) p.w[i] = sp[(i / 5) % 7];
    }
    tessera_conv_pack_weights(p.w, s.cout, k, p.pk2);
    tessera_conv_pack_weights_avx512(p.w, s.cout, k, p.pk512);
    return p;
}

static void release(problem *p) {
    free(p->in);
    free(p->w);
    free(p->b);
    free(p->pk2);
    free(p->pk512);
}

static tessera_conv_args args(const problem *p, int avx512, float *out) {
    tessera_conv_args a = {.input = p->in, .in_h = p->s.h, .in_w = p->s.w, .channels = p->s.cin,
                           .packed = avx512 ? p->pk512 : p->pk2, .outputs = p->s.cout,
                           .bias = p->s.bias ? p->b : NULL, .activation = p->s.act, .slope = 0.1f,
                           .output = out, .out_h = p->oh, .out_w = p->ow,
                           .kh = p->s.kh, .kw = p->s.kw, .dh = p->s.dh, .dw = p->s.dw,
                           .sh = p->s.sh, .sw = p->s.sw};
    return a;
}

// Scalar reference: the kernels' documented arithmetic, one fmaf chain in tap order.
static void reference(const problem *p, float *out) {
    const shape s = p->s;
    const long sh = s.sh > 1 ? s.sh : 1, sw = s.sw > 1 ? s.sw : 1;
    for (int m = 0; m < s.cout; m++)
        for (long y = 0; y < p->oh; y++)
            for (long x = 0; x < p->ow; x++) {
                float acc = 0.0f;
                const float *w = p->w + (size_t)m * s.cin * s.kh * s.kw;
                for (int ci = 0; ci < s.cin; ci++)
                    for (int ky = 0; ky < s.kh; ky++)
                        for (int kx = 0; kx < s.kw; kx++)
                            acc = fmaf(*w++, p->in[((size_t)ci * s.h + y * sh + (long)ky * s.dh) * s.w + x * sw + (long)kx * s.dw], acc);
                float v = acc + (s.bias ? p->b[m] : 0.0f);
                if (s.act == 1) v = v > 0.0f ? v : 0.0f;  // _mm_max_ps(v, 0): 0 unless v > 0
                if (s.act == 2) v = v > 0.0f ? v : v * 0.1f;
                out[((size_t)m * p->oh + y) * p->ow + x] = v;
            }
}

// Runs the kernel over the output rows in bands of `band` rows, claimed by `threads` threads.
typedef struct {
    tessera_conv_args a;
    int avx512, band;
    long *next;
} job;

static void *worker(void *arg) {
    job *j = arg;
    for (;;) {
        const long b = tessera_claim(j->next, 1), y0 = b * j->band;
        if (y0 >= j->a.out_h) break;
        const long y1 = y0 + j->band < j->a.out_h ? y0 + j->band : j->a.out_h;
        if (j->avx512) tessera_conv_direct_rows_avx512(&j->a, y0, y1);
        else tessera_conv_direct_rows(&j->a, y0, y1);
    }
    return NULL;
}

static void run(const problem *p, int avx512, float *out, int threads, int band) {
    long next = 0;
    job j = {.a = args(p, avx512, out), .avx512 = avx512, .band = band, .next = &next};
    pthread_t t[16];
    for (int i = 1; i < threads; i++) pthread_create(&t[i], NULL, worker, &j);
    worker(&j);
    for (int i = 1; i < threads; i++) pthread_join(t[i], NULL);
}

static int check(void) {
    const int ks[][2] = {{1, 1}, {3, 3}, {5, 5}, {6, 6}, {3, 2}, {2, 2}, {1, 3}};
    const int dils[] = {1, 2, 4, 8};
    const int couts[] = {1, 2, 3, 5, 7, 13, 14, 15, 16, 28, 29, 32, 64, 65};
    const int cins[] = {1, 3, 7, 32, 40};
    const int widths[] = {1, 5, 16, 17, 31, 32, 33, 63, 64, 65, 97, 129, 257, 300};
    int cases = 0, failed = 0;
    for (int i = 0; i < 600; i++) {
        seed = 1000u + (unsigned)i * 7919u;
        rnd();
        shape s;
        const int *kk = ks[i % 7];
        s.kh = kk[0];
        s.kw = kk[1];
        s.dh = dils[(i / 7) % 4];
        s.dw = dils[(i / 3) % 4];
        s.cout = couts[(i / 2) % 14];
        s.cin = cins[(i / 5) % 5];
        // Strides 1-4 (i % 4 == 0 keeps stride 1); inputs 0..stride-1 wider than needed.
        s.sw = 1 + (i / 13) % 4 * (i % 4 != 0);
        s.sh = 1 + (i / 17) % 3 * (i % 4 != 0);
        const long ow = widths[(i / 11) % 14];
        s.w = (int)((ow - 1) * s.sw + 1 + (long)(s.kw - 1) * s.dw + i % s.sw);
        s.h = (int)((i % 6) * s.sh + 1 + (long)(s.kh - 1) * s.dh + i % s.sh);
        s.act = i % 3;
        s.bias = i % 4 != 1;
        if ((long)s.cin * s.h * s.w * s.cout > 40000000L) continue;
        problem p = make(s, i % 5 == 0);
        const size_t n = (size_t)s.cout * p.oh * p.ow;
        float *ref = malloc(sizeof(float) * n), *o2 = malloc(sizeof(float) * n), *o5 = malloc(sizeof(float) * n);
        reference(&p, ref);
        memset(o2, 0xff, sizeof(float) * n);
        run(&p, 0, o2, 1, (int)p.oh);
        const int threads = 1 + i % 2, band = 1 + i % 3;
        memset(o5, 0xff, sizeof(float) * n);
        run(&p, 1, o5, threads, band);
        const int same2 = memcmp(o2, ref, sizeof(float) * n) == 0, same5 = memcmp(o5, o2, sizeof(float) * n) == 0;
        if (!same2 || !same5) {
            failed++;
            size_t at = 0;
            while (at < n && !memcmp(o5 + at, same2 ? o2 + at : ref + at, sizeof(float))) at++;
            printf("FAIL s%dx%d %d->%d %dx%d k%dx%d d%dx%d act %d bias %d threads %d band %d: avx2==ref %d avx512==avx2 %d "
                   "(first at %zu: ref %a avx2 %a avx512 %a)\n",
                   s.sh, s.sw, s.cin, s.cout, s.h, s.w, s.kh, s.kw, s.dh, s.dw, s.act, s.bias, threads, band, same2, same5, at,
                   at < n ? ref[at] : 0, at < n ? o2[at] : 0, at < n ? o5[at] : 0);
        }
        cases++;
        free(ref);
        free(o2);
        free(o5);
        release(&p);
    }
    printf("check: %d cases, %d failed (AVX-512 == AVX2 == scalar fmaf chain, bit for bit)\n", cases, failed);
    return failed;
}

static void bench(int threads) {
    double peak = 0;
    for (int i = 0; i < 3; i++) {
        const double g = fma_peak();
        if (g > peak) peak = g;
    }
    printf("FMA peak %.1f GFLOP/s per core (CPU time); %d thread(s), bands of 2 rows; (%% of that peak)\n", peak, threads);
    // The dense seed net's convolutions on a 1252-pixel-wide tile (benchmark --size 2000).
    const struct {
        const char *name;
        shape s;
    } layers[] = {
        {"fc6 32->64 6x6 d4", {32, 64, 8 + 20, 1252 + 20, 6, 6, 4, 4, 1, 1}},
        {"fc7 64->64 1x1", {64, 64, 8, 1252, 1, 1, 1, 1, 1, 1}},
        {"conv2 32->32 3x3 d2", {32, 32, 8 + 4, 1252 + 4, 3, 3, 2, 2, 1, 1}},
        {"conv1 3->32 3x3", {3, 32, 8 + 2, 1252 + 2, 3, 3, 1, 1, 1, 1}},
        {"fc8 64->2 1x1", {64, 2, 8, 1252, 1, 1, 1, 1, 0, 1}},
        // fcn-batchnorm's strided convolutions as its FCN (fast, shift) runs them on a 1000² tile.
        {"conv1b 16->16 2x2 s2", {16, 16, 16, 2 * 531, 2, 2, 1, 1, 0, 1, 2, 2}},
        {"conv2b 32->32 3x3 s2", {32, 32, 17, 2 * 263 + 1, 3, 3, 1, 1, 0, 1, 2, 2}},
        {"conv3b 64->64 4x4 s2", {64, 64, 18, 2 * 129 + 2, 4, 4, 1, 1, 0, 1, 2, 2}},
    };
    for (int l = 0; l < (int)(sizeof layers / sizeof layers[0]); l++) {
        problem p = make(layers[l].s, 0);
        const size_t n = (size_t)p.s.cout * p.oh * p.ow;
        float *out = malloc(sizeof(float) * n);
        const double flop = 2.0 * p.s.cout * p.s.cin * p.s.kh * p.s.kw * (double)p.oh * (double)p.ow;
        double wall[2] = {1e30, 1e30}, busy[2] = {1e30, 1e30};
        for (int r = 0; r < 41; r++)
            for (int isa = 0; isa < 2; isa++) {  // interleaved: the machine is shared and noisy
                const double t = now(), c = cpu();
                run(&p, isa, out, threads, 2);
                const double dt = now() - t, dc = cpu() - c;
                if (dt < wall[isa]) wall[isa] = dt;
                if (dc < busy[isa]) busy[isa] = dc;
            }
        printf("%-20s AVX2 %5.1f (%3.0f%%) AVX-512 %5.1f (%3.0f%%) GFLOP/s per core: %.2fx; wall %5.1f -> %5.1f GFLOP/s\n",
               layers[l].name, flop / busy[0] * 1e-9, 100 * flop / busy[0] * 1e-9 / peak,
               flop / busy[1] * 1e-9, 100 * flop / busy[1] * 1e-9 / peak, busy[0] / busy[1],
               flop / wall[0] * 1e-9, flop / wall[1] * 1e-9);
        free(out);
        release(&p);
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "both";
    const int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (!tessera_conv_direct_available() || !tessera_conv_direct_avx512_available()) {
        printf("this CPU lacks AVX2/FMA or AVX-512F: nothing to compare\n");
        return 0;
    }
    int failed = 0;
    if (strcmp(mode, "bench")) failed = check();
    if (strcmp(mode, "check")) bench(threads);
    return failed != 0;
}
