/*
 * test_log.c - the log's two line formats, byte for byte, and JSON escaping.
 */
#include "log.h"
#include "log_line.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

Suite *test_suite(void);

/* 2026-11-29T20:40:01.123Z */
static struct log_event event(const char *msg)
{
    struct log_event e = {
        .time = {1795984801, 123456789},
        .level = LOG_INFO,
        .pid = 42,
        .thread = "io0",
        .msg = msg,
    };
    return e;
}

/* s escaped into a NUL-terminated static buffer of cap bytes at most. */
static const char *escaped(const char *s, size_t len, size_t cap)
{
    static char out[256];
    ck_assert_uint_lt(cap, sizeof(out));
    size_t n = log_json_escape(out, cap, s, len);
    ck_assert_uint_le(n, cap);
    out[n] = '\0';
    return out;
}

#define ESC(lit) escaped(lit, sizeof(lit) - 1, 200)

START_TEST(test_log_text_line_is_unchanged)
{
    char buf[LOG_LINE_MAX];
    struct log_event e = event("hello");
    ck_assert_uint_eq(log_line_text(buf, sizeof(buf), &e), strlen(buf));
    ck_assert_str_eq(buf, "2026-11-29T20:40:01.123Z ferryd[42] info  hello\n");
    e.level = LOG_DEBUG;
    e.client = 12;
    e.peer = "127.0.0.1:5555";
    e.msg = "closing: \"bye\"";
    log_line_text(buf, sizeof(buf), &e);
    ck_assert_str_eq(buf, "2026-11-29T20:40:01.123Z ferryd[42] debug client 12 127.0.0.1:5555: "
                          "closing: \"bye\"\n");
}
END_TEST

START_TEST(test_log_text_line_is_cut_to_fit_with_its_newline)
{
    char msg[300];
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    char buf[100];
    struct log_event e = event(msg);
    size_t n = log_line_text(buf, sizeof(buf), &e);
    ck_assert_uint_eq(n, sizeof(buf) - 1);
    ck_assert_uint_eq(strlen(buf), n);
    ck_assert_int_eq(buf[n - 1], '\n');
    ck_assert_int_eq(buf[n - 2], 'x');
}
END_TEST

START_TEST(test_log_json_line_has_time_level_pid_thread_msg)
{
    char buf[LOG_LINE_MAX];
    struct log_event e = event("store opened");
    e.level = LOG_WARN;
    e.thread = "main";
    size_t n = log_line_json(buf, sizeof(buf), &e);
    ck_assert_uint_eq(n, strlen(buf));
    ck_assert_str_eq(buf, "{\"time\":\"2026-11-29T20:40:01.123Z\",\"level\":\"warn\",\"pid\":42,"
                          "\"thread\":\"main\",\"msg\":\"store opened\"}\n");
}
END_TEST

START_TEST(test_log_json_line_carries_client_and_peer_as_fields)
{
    char buf[LOG_LINE_MAX];
    struct log_event e = event("closing: bad \"frame\"\n");
    e.level = LOG_ERROR;
    e.client = 18446744073709551615ull;
    e.peer = "[::1]:7373";
    log_line_json(buf, sizeof(buf), &e);
    ck_assert_str_eq(buf,
                     "{\"time\":\"2026-11-29T20:40:01.123Z\",\"level\":\"error\",\"pid\":42,"
                     "\"thread\":\"io0\",\"client\":18446744073709551615,\"peer\":\"[::1]:7373\","
                     "\"msg\":\"closing: bad \\\"frame\\\"\\n\"}\n");
}
END_TEST

START_TEST(test_log_json_line_cut_to_fit_stays_one_object)
{
    /* Every byte of the message becomes a 6-byte escape: it cannot fit. */
    char msg[1024];
    memset(msg, 0x01, sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    char buf[600];
    struct log_event e = event(msg);
    e.thread = "th\"read";
    size_t n = log_line_json(buf, sizeof(buf), &e);
    ck_assert_uint_lt(n, sizeof(buf));
    ck_assert_uint_eq(strlen(buf), n);
    ck_assert_str_eq(buf + n - 3, "\"}\n");
    ck_assert_ptr_nonnull(strstr(buf, "\"thread\":\"th\\\"read\""));
    /* The message ends on a whole escape: "\u0001" repeated, then "}. */
    const char *m = strstr(buf, "\"msg\":\"") + 7;
    size_t mlen = (size_t)(buf + n - 3 - m);
    ck_assert_uint_gt(mlen, 0);
    ck_assert_uint_eq(mlen % 6, 0);
    for (size_t i = 0; i < mlen; i += 6) {
        ck_assert_int_eq(memcmp(m + i, "\\u0001", 6), 0);
    }
}
END_TEST

START_TEST(test_log_json_escape_quotes_backslash_and_controls)
{
    ck_assert_str_eq(ESC("plain text: 100% {ok} / 'q'"), "plain text: 100% {ok} / 'q'");
    ck_assert_str_eq(ESC("a\"b\\c"), "a\\\"b\\\\c");
    ck_assert_str_eq(ESC("\n\t\r\b\f"), "\\n\\t\\r\\b\\f");
    ck_assert_str_eq(ESC("\x01\x1f\x7f"), "\\u0001\\u001f\\u007f");
    ck_assert_str_eq(escaped("a\0b", 3, 200), "a\\u0000b");
}
END_TEST

START_TEST(test_log_json_escape_keeps_valid_utf8)
{
    /* é (2 bytes), € (3), U+10FFFF (4, the last code point), 𝄞 (4) */
    ck_assert_str_eq(ESC("caf\xc3\xa9 \xe2\x82\xac \xf4\x8f\xbf\xbf \xf0\x9d\x84\x9e"),
                     "caf\xc3\xa9 \xe2\x82\xac \xf4\x8f\xbf\xbf \xf0\x9d\x84\x9e");
    /* U+E000 follows the surrogates; U+0800 is the first 3-byte form */
    ck_assert_str_eq(ESC("\xee\x80\x80\xe0\xa0\x80"), "\xee\x80\x80\xe0\xa0\x80");
}
END_TEST

START_TEST(test_log_json_escape_replaces_invalid_utf8)
{
    const char *r = "\\ufffd";
    char want[64];
    /* A stray continuation byte, and bytes that never occur in UTF-8. */
    ck_assert_str_eq(ESC("a\x80z"), "a\\ufffdz");
    ck_assert_str_eq(ESC("\xc0\xc1\xf5\xff"), "\\ufffd\\ufffd\\ufffd\\ufffd");
    /* Overlong "/" (C0 AF): each byte replaced. */
    snprintf(want, sizeof(want), "%s%s", r, r);
    ck_assert_str_eq(ESC("\xc0\xaf"), want);
    /* Overlong 3-byte (E0 80 80) and 4-byte (F0 80 80 80) forms. */
    snprintf(want, sizeof(want), "%s%s%s", r, r, r);
    ck_assert_str_eq(ESC("\xe0\x80\x80"), want);
    /* A surrogate (ED A0 80, U+D800). */
    ck_assert_str_eq(ESC("\xed\xa0\x80"), want);
    /* Past U+10FFFF (F4 90 80 80). */
    snprintf(want, sizeof(want), "%s%s%s%s", r, r, r, r);
    ck_assert_str_eq(ESC("\xf4\x90\x80\x80"), want);
    ck_assert_str_eq(ESC("\xf0\x80\x80\x80"), want);
    /* A sequence cut short by the end, and by an ASCII byte. */
    snprintf(want, sizeof(want), "x%s%s", r, r);
    ck_assert_str_eq(ESC("x\xe2\x82"), want);
    snprintf(want, sizeof(want), "%s\\\"", r);
    ck_assert_str_eq(ESC("\xc3\""), want);
}
END_TEST

START_TEST(test_log_json_escape_never_splits_an_escape_or_a_character)
{
    /* Room for "ab" and 5 more bytes: the 6-byte \u0001 does not fit. */
    ck_assert_str_eq(escaped("ab\x01z", 4, 7), "ab");
    ck_assert_str_eq(escaped("ab\x01z", 4, 8), "ab\\u0001");
    /* A 3-byte character with room for 2. */
    ck_assert_str_eq(escaped("a\xe2\x82\xac", 4, 3), "a");
    ck_assert_str_eq(escaped("a\"", 2, 2), "a");
    ck_assert_str_eq(escaped("abc", 3, 0), "");
}
END_TEST

START_TEST(test_log_format_and_level_parse)
{
    ck_assert_int_eq(log_format_parse("text"), LOG_FORMAT_TEXT);
    ck_assert_int_eq(log_format_parse("json"), LOG_FORMAT_JSON);
    ck_assert_int_eq(log_format_parse("JSON "), -EINVAL);
    ck_assert_int_eq(log_format_parse(""), -EINVAL);
    ck_assert_int_eq(log_level_parse("debug"), LOG_DEBUG);
    ck_assert_int_eq(log_level_parse("warning"), LOG_WARN);
    ck_assert_int_eq(log_level_parse("loud"), -EINVAL);
    ck_assert_str_eq(log_level_name(LOG_ERROR), "error");
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_test(tc, test_log_text_line_is_unchanged);
    tcase_add_test(tc, test_log_text_line_is_cut_to_fit_with_its_newline);
    tcase_add_test(tc, test_log_json_line_has_time_level_pid_thread_msg);
    tcase_add_test(tc, test_log_json_line_carries_client_and_peer_as_fields);
    tcase_add_test(tc, test_log_json_line_cut_to_fit_stays_one_object);
    tcase_add_test(tc, test_log_json_escape_quotes_backslash_and_controls);
    tcase_add_test(tc, test_log_json_escape_keeps_valid_utf8);
    tcase_add_test(tc, test_log_json_escape_replaces_invalid_utf8);
    tcase_add_test(tc, test_log_json_escape_never_splits_an_escape_or_a_character);
    tcase_add_test(tc, test_log_format_and_level_parse);
    suite_add_tcase(s, tc);
    return s;
}
