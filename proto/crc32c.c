/*
 * crc32c.c - CRC-32C, slicing-by-8 with an SSE4.2 fast path.
 *
 * Slicing-by-8 (Intel, "A Systematic Approach to Building High Performance
 * Software-Based CRC Generators", 2005) consumes 8 input bytes per step
 * through 8 tables of 256 entries: table[0] is the classic bytewise table,
 * table[k][b] is the CRC of byte b followed by k zero bytes. It runs at
 * about 1 byte per cycle without any CPU extension.
 *
 * On x86-64 with SSE4.2 the crc32 instruction computes exactly this
 * polynomial, 8 bytes per instruction; we use it when cpuid says it exists.
 * The choice is made once (pthread_once), together with building the
 * tables, so the hot path is one indirect call with no branch on features.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_HAVE_X86 1
#include <nmmintrin.h>
#else
#define CRC32C_HAVE_X86 0
#endif

#define CRC32C_POLY 0x82F63B78u /* reflected 0x1EDC6F41 */

/* Written once under crc32c_once, read-only afterwards. */
static uint32_t crc32c_table[8][256];
static uint32_t (*crc32c_impl)(uint32_t, const unsigned char *, size_t);
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    /* Align to 8 so the 8-byte loads below are aligned. */
    while (len > 0 && ((uintptr_t)p & 7u) != 0) {
        crc = crc32c_table[0][(crc ^ *p++) & 0xffu] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint32_t lo;
        uint32_t hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = crc32c_table[7][lo & 0xffu] ^ crc32c_table[6][(lo >> 8) & 0xffu] ^
              crc32c_table[5][(lo >> 16) & 0xffu] ^ crc32c_table[4][lo >> 24] ^
              crc32c_table[3][hi & 0xffu] ^ crc32c_table[2][(hi >> 8) & 0xffu] ^
              crc32c_table[1][(hi >> 16) & 0xffu] ^ crc32c_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        crc = crc32c_table[0][(crc ^ *p++) & 0xffu] ^ (crc >> 8);
        len--;
    }
    return ~crc;
}

#if CRC32C_HAVE_X86
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p,
                                                            size_t len)
{
    uint64_t c = (uint32_t)~crc;
    while (len > 0 && ((uintptr_t)p & 7u) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    while (len > 0) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    return ~(uint32_t)c;
}
#endif

static void crc32c_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        }
        crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc32c_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc32c_table[0][c & 0xffu] ^ (c >> 8);
            crc32c_table[k][n] = c;
        }
    }
    crc32c_impl = crc32c_sw;
#if CRC32C_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        crc32c_impl = crc32c_hw;
    }
#endif
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_impl(crc, buf, len);
}

uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc32c_once, crc32c_init);
    return crc32c_sw(crc, buf, len);
}

int crc32c_is_hw(void)
{
    pthread_once(&crc32c_once, crc32c_init);
#if CRC32C_HAVE_X86
    return crc32c_impl == crc32c_hw;
#else
    return 0;
#endif
}
