/*
 * test_cli_util.c - parsing and output helpers of the `ferry` tool.
 */
#include "cli_util.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

Suite *test_suite(void);

START_TEST(test_cli_parse_u64_accepts_digits_only)
{
    uint64_t v = 7;
    ck_assert_int_eq(cli_parse_u64("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(cli_parse_u64("18446744073709551615", &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
    ck_assert_int_eq(cli_parse_u64("18446744073709551616", &v), -ERANGE);
    v = 7;
    ck_assert_int_eq(cli_parse_u64("", &v), -EINVAL);
    ck_assert_int_eq(cli_parse_u64("-1", &v), -EINVAL);
    ck_assert_int_eq(cli_parse_u64("12x", &v), -EINVAL);
    ck_assert_int_eq(cli_parse_u64(" 1", &v), -EINVAL);
    ck_assert_uint_eq(v, 7);
}
END_TEST

START_TEST(test_cli_parse_duration_units)
{
    uint64_t v;
    ck_assert_int_eq(cli_parse_duration_ns("10", &v), 0);
    ck_assert_uint_eq(v, 10000000000ull);
    ck_assert_int_eq(cli_parse_duration_ns("1.5s", &v), 0);
    ck_assert_uint_eq(v, 1500000000ull);
    ck_assert_int_eq(cli_parse_duration_ns("250ms", &v), 0);
    ck_assert_uint_eq(v, 250000000ull);
    ck_assert_int_eq(cli_parse_duration_ns("2m", &v), 0);
    ck_assert_uint_eq(v, 120000000000ull);
    ck_assert_int_eq(cli_parse_duration_ns("1h", &v), 0);
    ck_assert_uint_eq(v, 3600000000000ull);
    ck_assert_int_eq(cli_parse_duration_ns("100us", &v), 0);
    ck_assert_uint_eq(v, 100000ull);
    ck_assert_int_eq(cli_parse_duration_ns("0.5", &v), 0);
    ck_assert_uint_eq(v, 500000000ull);
    ck_assert_int_eq(cli_parse_duration_ns("5x", &v), -EINVAL);
    ck_assert_int_eq(cli_parse_duration_ns("-1s", &v), -EINVAL);
    ck_assert_int_eq(cli_parse_duration_ns("s", &v), -EINVAL);
    ck_assert_int_eq(cli_parse_duration_ns("99999999999999h", &v), -ERANGE);
}
END_TEST

START_TEST(test_cli_parse_size_units)
{
    uint64_t v;
    ck_assert_int_eq(cli_parse_size("128", &v), 0);
    ck_assert_uint_eq(v, 128);
    ck_assert_int_eq(cli_parse_size("16k", &v), 0);
    ck_assert_uint_eq(v, 16384);
    ck_assert_int_eq(cli_parse_size("16KiB", &v), 0);
    ck_assert_uint_eq(v, 16384);
    ck_assert_int_eq(cli_parse_size("1M", &v), 0);
    ck_assert_uint_eq(v, 1048576);
    ck_assert_int_eq(cli_parse_size("1.5k", &v), 0);
    ck_assert_uint_eq(v, 1536);
    ck_assert_int_eq(cli_parse_size("1.5", &v), -EINVAL);
    ck_assert_int_eq(cli_parse_size("12q", &v), -EINVAL);
}
END_TEST

START_TEST(test_cli_parse_time_forms)
{
    int64_t now = 1800000000ll * 1000000000ll;
    int64_t v;
    ck_assert_int_eq(cli_parse_time_ns("1970-01-01T00:00:00Z", now, &v), 0);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(cli_parse_time_ns("2026-11-29T20:15:00Z", now, &v), 0);
    ck_assert_int_eq(v, 1795983300ll * 1000000000ll);
    ck_assert_int_eq(cli_parse_time_ns("2026-11-29T21:15:00.5+01:00", now, &v), 0);
    ck_assert_int_eq(v, 1795983300ll * 1000000000ll + 500000000ll);
    ck_assert_int_eq(cli_parse_time_ns("1795983300.25", now, &v), 0);
    ck_assert_int_eq(v, 1795983300ll * 1000000000ll + 250000000ll);
    ck_assert_int_eq(cli_parse_time_ns("10m", now, &v), 0);
    ck_assert_int_eq(v, now - 600ll * 1000000000ll);
    ck_assert_int_eq(cli_parse_time_ns("2026-13-01T00:00:00Z", now, &v), -EINVAL);
    ck_assert_int_eq(cli_parse_time_ns("2026-11-29T20:15:00", now, &v), -EINVAL);
    ck_assert_int_eq(cli_parse_time_ns("yesterday", now, &v), -EINVAL);
}
END_TEST

START_TEST(test_cli_json_escapes_quotes_and_controls)
{
    struct cli_buf b = {0};
    const char in[] = "a\"b\\c\nd\te\x01\x7f"
                      "\xc3\xa9";
    cli_buf_json_str(&b, in, sizeof(in) - 1);
    ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u007f\xc3\xa9\"");
    b.len = 0;
    cli_buf_json_str(&b, "", 0);
    ck_assert_str_eq(b.data, "\"\"");
    /* Bytes that are not UTF-8 become U+FFFD; a NUL is escaped. */
    b.len = 0;
    cli_buf_json_str(&b, "a\xff\xc3(\0\xe2\x82\xac", 8);
    ck_assert_str_eq(b.data, "\"a\\ufffd\\ufffd(\\u0000\xe2\x82\xac\"");
    cli_buf_free(&b);
}
END_TEST

START_TEST(test_cli_quoted_escapes_what_a_terminal_should_not_see)
{
    struct cli_buf b = {0};
    /* printable ASCII and UTF-8 as is; quote, backslash, \n \r \t escaped */
    const char in[] = "a \"b\"\\c\n\r\t\xc3\xa9";
    cli_buf_quoted(&b, in, sizeof(in) - 1);
    ck_assert_str_eq(b.data, "\"a \\\"b\\\"\\\\c\\n\\r\\t\xc3\xa9\"");
    /* controls (C0, DEL, C1) and bytes that are not UTF-8 as \xNN */
    b.len = 0;
    cli_buf_quoted(&b, "\0\x01\x7f\xc2\x85\xff\xc3(", 8);
    ck_assert_str_eq(b.data, "\"\\x00\\x01\\x7f\\xc2\\x85\\xff\\xc3(\"");
    b.len = 0;
    cli_buf_quoted(&b, "", 0);
    ck_assert_str_eq(b.data, "\"\"");
    cli_buf_free(&b);
}
END_TEST

START_TEST(test_cli_json_bytes_text_or_base64)
{
    struct cli_buf b = {0};
    cli_buf_adds(&b, "{\"x\":1");
    cli_buf_json_bytes(&b, "payload", "encoding", "h\"i", 3);
    cli_buf_json_bytes(&b, "key", "key_encoding", "\x00\xff", 2);
    cli_buf_adds(&b, "}");
    ck_assert_str_eq(b.data, "{\"x\":1,\"payload\":\"h\\\"i\",\"key\":\"AP8=\",\"key_encoding\":"
                             "\"base64\"}");
    cli_buf_free(&b);
}
END_TEST

START_TEST(test_cli_base64_round_trips)
{
    struct {
        const char *in, *out;
    } cases[] = {{"", ""},
                 {"f", "Zg=="},
                 {"fo", "Zm8="},
                 {"foo", "Zm9v"},
                 {"foob", "Zm9vYg=="},
                 {"fooba", "Zm9vYmE="},
                 {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cli_buf b = {0};
        cli_buf_base64(&b, cases[i].in, strlen(cases[i].in));
        ck_assert_str_eq(b.data ? b.data : "", cases[i].out);
        char dec[16];
        long n = cli_base64_decode(cases[i].out, strlen(cases[i].out), dec);
        ck_assert_int_eq(n, (long)strlen(cases[i].in));
        ck_assert(memcmp(dec, cases[i].in, (size_t)n) == 0);
        cli_buf_free(&b);
    }
    unsigned char bin[256];
    for (int i = 0; i < 256; i++) {
        bin[i] = (unsigned char)i;
    }
    struct cli_buf b = {0};
    cli_buf_base64(&b, bin, sizeof(bin));
    unsigned char dec[256];
    ck_assert_int_eq(cli_base64_decode(b.data, b.len, dec), 256);
    ck_assert(memcmp(dec, bin, 256) == 0);
    ck_assert_int_eq(cli_base64_decode("Zg=", 3, dec), -1);
    ck_assert_int_eq(cli_base64_decode("Z=g=", 4, dec), -1);
    cli_buf_free(&b);
}
END_TEST

START_TEST(test_cli_utf8_validation)
{
    ck_assert(cli_utf8_valid("hello", 5));
    ck_assert(cli_utf8_valid("", 0));
    ck_assert(cli_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)); /* é € 😀 */
    ck_assert(!cli_utf8_valid("\xff", 1));
    ck_assert(!cli_utf8_valid("\xc3", 1));             /* truncated */
    ck_assert(!cli_utf8_valid("\xc0\xaf", 2));         /* overlong */
    ck_assert(!cli_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    ck_assert(!cli_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!cli_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ck_assert(!cli_utf8_valid("a\0b", 3));             /* NUL */
}
END_TEST

START_TEST(test_cli_split_hostport)
{
    char host[64];
    uint16_t port;
    ck_assert_int_eq(cli_split_hostport("127.0.0.1:7373", host, sizeof(host), 1, &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(port, 7373);
    ck_assert_int_eq(cli_split_hostport("example.org", host, sizeof(host), 7373, &port), 0);
    ck_assert_str_eq(host, "example.org");
    ck_assert_uint_eq(port, 7373);
    ck_assert_int_eq(cli_split_hostport("[::1]:4222", host, sizeof(host), 1, &port), 0);
    ck_assert_str_eq(host, "::1");
    ck_assert_uint_eq(port, 4222);
    ck_assert_int_eq(cli_split_hostport("h:0", host, sizeof(host), 1, &port), -EINVAL);
    ck_assert_int_eq(cli_split_hostport("h:70000", host, sizeof(host), 1, &port), -EINVAL);
    ck_assert_int_eq(cli_split_hostport(":1", host, sizeof(host), 1, &port), -EINVAL);
    ck_assert_int_eq(cli_split_hostport("::1", host, sizeof(host), 1, &port), -EINVAL);
}
END_TEST

START_TEST(test_cli_time_rfc3339_output)
{
    struct cli_buf b = {0};
    cli_buf_time_rfc3339(&b, 1795983300ll * 1000000000ll + 5);
    ck_assert_str_eq(b.data, "2026-11-29T20:15:00.000000005Z");
    cli_buf_free(&b);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("cli_util");
    TCase *tc = tcase_create("cli_util");
    tcase_add_test(tc, test_cli_parse_u64_accepts_digits_only);
    tcase_add_test(tc, test_cli_parse_duration_units);
    tcase_add_test(tc, test_cli_parse_size_units);
    tcase_add_test(tc, test_cli_parse_time_forms);
    tcase_add_test(tc, test_cli_json_escapes_quotes_and_controls);
    tcase_add_test(tc, test_cli_quoted_escapes_what_a_terminal_should_not_see);
    tcase_add_test(tc, test_cli_json_bytes_text_or_base64);
    tcase_add_test(tc, test_cli_base64_round_trips);
    tcase_add_test(tc, test_cli_utf8_validation);
    tcase_add_test(tc, test_cli_split_hostport);
    tcase_add_test(tc, test_cli_time_rfc3339_output);
    suite_add_tcase(s, tc);
    return s;
}
