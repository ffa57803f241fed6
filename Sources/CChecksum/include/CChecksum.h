#ifndef TESSERA_CCHECKSUM_H
#define TESSERA_CCHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32 (IEEE 802.3, zlib's and PNG's) of `count` bytes at `bytes`, continuing
/// `crc` (0 to start): tessera_crc32(tessera_crc32(0, a), b) is the CRC of a then b.
/// Folds 64 bytes per step with carry-less multiplication where the CPU has it
/// (x86-64 PCLMULQDQ, chosen at run time), else slicing-by-8 tables.
uint32_t tessera_crc32(uint32_t crc, const void *bytes, size_t count);

/// The same by tables only (what other CPUs get; tests compare the two).
uint32_t tessera_crc32_tables(uint32_t crc, const void *bytes, size_t count);

/// Whether tessera_crc32 folds with carry-less multiplication on this CPU.
int tessera_crc32_folds(void);

#endif
