/*
 * crc32c.h - CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78).
 *
 * The checksum the store puts on every record (iSCSI, ext4, LevelDB and
 * RocksDB use the same one). A pure module: no IO, no allocation, no state
 * besides the lookup tables, which are built once on first use.
 *
 * Chaining follows zlib's crc32(): start with 0 and feed the previous
 * result back in, so crc32c(crc32c(0, a, n), b, m) equals the CRC of the
 * concatenation of a and b. The standard check value holds:
 * crc32c(0, "123456789", 9) == 0xE3069283.
 *
 * Threads: every function may be called from any thread at any time.
 */
#ifndef FERRY_CRC32C_H
#define FERRY_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of buf[0, len) continuing from crc (0 to start). Uses the SSE4.2
 * crc32 instruction when the CPU has it, slicing-by-8 tables otherwise.
 * buf may be NULL when len is 0. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The same function computed with the portable slicing-by-8 code only, for
 * tests that compare both paths. */
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len);

/* 1 when crc32c() uses the hardware instruction on this machine, else 0. */
int crc32c_is_hw(void);

#endif /* FERRY_CRC32C_H */
