// CRC-32 of the reflected polynomial 0xEDB88320 (zlib, PNG, gzip).
//
// Tables: the register after a byte n followed by k zero bytes, for k = 0…7, so eight
// bytes are folded per step with independent lookups.
//
// Carry-less folding (x86-64): the message is a polynomial M over GF(2) and the CRC
// register is M·x^32 mod P. A 128-bit block X that lies D bits before a later block Y
// can be replaced by X·x^D mod P, which is at most 96 bits long and is added into Y:
// with X = H·x^64 + L (H: the block's first 8 bytes), X·x^D ≡ H·(x^(64+D) mod P) +
// L·(x^D mod P). Four blocks are carried 512 bits at a time, then merged 128 bits at
// a time, and the last block is finished by the tables (its CRC from a zero register
// equals the message's, since the two are congruent modulo P).
//
// Bit order: bytes are loaded little-endian, so bit i of a 64-bit lane is the
// coefficient of x^(63-i), and the product of two lanes lands one place low in the
// 128-bit frame. A constant for x^e is therefore stored as x^(e-1) mod P, its
// coefficient of x^d at bit 63-d (see fold_constant).
#include "CChecksum.h"

#include <string.h>

static uint32_t tables[8][256];

static void make_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        tables[0][n] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int n = 0; n < 256; n++) tables[k][n] = tables[0][tables[k - 1][n] & 0xFF] ^ (tables[k - 1][n] >> 8);
}

// The register (not inverted) carried over `count` bytes.
static uint32_t by_tables(uint32_t c, const uint8_t *p, size_t count) {
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        word = __builtin_bswap64(word);
#endif
        uint32_t lo = (uint32_t)word ^ c, hi = (uint32_t)(word >> 32);
        c = tables[7][lo & 0xFF] ^ tables[6][(lo >> 8) & 0xFF] ^ tables[5][(lo >> 16) & 0xFF] ^ tables[4][lo >> 24]
            ^ tables[3][hi & 0xFF] ^ tables[2][(hi >> 8) & 0xFF] ^ tables[1][(hi >> 16) & 0xFF] ^ tables[0][hi >> 24];
        p += 8;
        count -= 8;
    }
    while (count--) c = tables[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
#include <immintrin.h>

// x^e mod P as a lane constant: the coefficient of x^d at bit 63-d, for e - 1 (the
// product's one-place shift).
static uint64_t fold_constant(unsigned e) {
    // r = x^(e-1) mod P, kept as bits 0..31 = coefficients of x^0..x^31.
    uint32_t r = 1;  // x^0
    for (unsigned i = 0; i < e - 1; i++) {
        uint32_t top = r >> 31;
        r <<= 1;
        if (top) r ^= 0x04C11DB7u;  // x^32 ≡ P - x^32
    }
    uint64_t lane = 0;
    for (int d = 0; d < 32; d++)
        if (r >> d & 1) lane |= 1ull << (63 - d);
    return lane;
}

// Lane constants: (H, L) pairs for D = 512 and D = 128.
static uint64_t k512_h, k512_l, k128_h, k128_l;

__attribute__((target("pclmul,sse4.1"))) static inline __m128i fold(__m128i x, __m128i k, __m128i y) {
    // k: H's constant in the low lane, L's in the high lane.
    __m128i h = _mm_clmulepi64_si128(x, k, 0x00);
    __m128i l = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(h, l), y);
}

__attribute__((target("pclmul,sse4.1"))) static uint32_t by_folding(uint32_t c, const uint8_t *p, size_t count) {
    const __m128i k512 = _mm_set_epi64x((long long)k512_l, (long long)k512_h);
    const __m128i k128 = _mm_set_epi64x((long long)k128_l, (long long)k128_h);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p), x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32)), x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)c));  // the register enters with the first 4 bytes
    p += 64;
    count -= 64;
    while (count >= 64) {
        x0 = fold(x0, k512, _mm_loadu_si128((const __m128i *)p));
        x1 = fold(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        count -= 64;
    }
    __m128i x = fold(fold(fold(x0, k128, x1), k128, x2), k128, x3);
    while (count >= 16) {
        x = fold(x, k128, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        count -= 16;
    }
    uint8_t last[16];
    _mm_storeu_si128((__m128i *)last, x);
    return by_tables(by_tables(0, last, 16), p, count);
}
#endif

static int folds = 0;

__attribute__((constructor)) static void set_up(void) {
    make_tables();
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1")) {
        k512_h = fold_constant(64 + 512);
        k512_l = fold_constant(512);
        k128_h = fold_constant(64 + 128);
        k128_l = fold_constant(128);
        folds = 1;
    }
#endif
}

uint32_t tessera_crc32_tables(uint32_t crc, const void *bytes, size_t count) {
    return ~by_tables(~crc, (const uint8_t *)bytes, count);
}

uint32_t tessera_crc32(uint32_t crc, const void *bytes, size_t count) {
#if defined(__x86_64__)
    if (folds && count >= 128) return ~by_folding(~crc, (const uint8_t *)bytes, count);
#endif
    return ~by_tables(~crc, (const uint8_t *)bytes, count);
}

int tessera_crc32_folds(void) { return folds; }
