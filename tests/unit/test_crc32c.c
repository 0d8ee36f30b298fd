/*
 * test_crc32c.c - CRC-32C against published check values, chaining, and the
 * hardware path against the portable one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "crc32c.h"

START_TEST(test_crc32c_matches_check_values)
{
    /* RFC 3720 (iSCSI) appendix B.4 and the common "123456789" check. */
    unsigned char buf[32];
    ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xE3069283u);
    memset(buf, 0, sizeof(buf));
    ck_assert_uint_eq(crc32c(0, buf, sizeof(buf)), 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    ck_assert_uint_eq(crc32c(0, buf, sizeof(buf)), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) {
        buf[i] = (unsigned char)i;
    }
    ck_assert_uint_eq(crc32c(0, buf, sizeof(buf)), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) {
        buf[i] = (unsigned char)(31 - i);
    }
    ck_assert_uint_eq(crc32c(0, buf, sizeof(buf)), 0x113FDB5Cu);
    ck_assert_uint_eq(crc32c(0, NULL, 0), 0u);
    ck_assert_uint_eq(crc32c_portable(0, "123456789", 9), 0xE3069283u);
}
END_TEST

START_TEST(test_crc32c_chaining_equals_whole)
{
    unsigned char buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (unsigned char)(i * 131 + 7);
    }
    uint32_t whole = crc32c(0, buf, sizeof(buf));
    for (size_t cut = 0; cut <= sizeof(buf); cut += 37) {
        uint32_t c = crc32c(0, buf, cut);
        ck_assert_uint_eq(crc32c(c, buf + cut, sizeof(buf) - cut), whole);
        c = crc32c_portable(0, buf, cut);
        ck_assert_uint_eq(crc32c_portable(c, buf + cut, sizeof(buf) - cut), whole);
    }
}
END_TEST

START_TEST(test_crc32c_hw_and_portable_agree_on_all_alignments)
{
    unsigned char *buf = malloc(4096 + 16);
    ck_assert_ptr_nonnull(buf);
    srand(7);
    for (size_t i = 0; i < 4096 + 16; i++) {
        buf[i] = (unsigned char)rand();
    }
    for (size_t off = 0; off < 16; off++) {
        for (size_t len = 0; len < 300; len++) {
            ck_assert_uint_eq(crc32c(0, buf + off, len), crc32c_portable(0, buf + off, len));
        }
        ck_assert_uint_eq(crc32c(0x1234u, buf + off, 4096),
                          crc32c_portable(0x1234u, buf + off, 4096));
    }
    free(buf);
    ck_assert_int_ge(crc32c_is_hw(), 0); /* either path is valid; both checked */
}
END_TEST

Suite *test_suite(void);

Suite *test_suite(void)
{
    Suite *s = suite_create("crc32c");
    TCase *tc = tcase_create("crc32c_matches_check_values");
    tcase_add_test(tc, test_crc32c_matches_check_values);
    suite_add_tcase(s, tc);
    tc = tcase_create("crc32c_chaining_equals_whole");
    tcase_add_test(tc, test_crc32c_chaining_equals_whole);
    suite_add_tcase(s, tc);
    tc = tcase_create("crc32c_hw_and_portable_agree");
    tcase_add_test(tc, test_crc32c_hw_and_portable_agree_on_all_alignments);
    suite_add_tcase(s, tc);
    return s;
}
