/* Unit tests for proto/frame.c: the length-prefix decoder. */
#include "ferry.h"
#include "frame.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

Suite *test_suite(void);

/* Build a frame with a body of n bytes of value v into out; returns its size. */
static size_t make_frame(uint8_t *out, uint32_t n, uint8_t v)
{
    frame_hdr_put(out, n);
    memset(out + FRAME_HDR_LEN, v, n);
    return FRAME_HDR_LEN + n;
}

START_TEST(test_frame_header_is_big_endian)
{
    uint8_t h[4];
    frame_hdr_put(h, 0x01020304u);
    ck_assert_uint_eq(h[0], 1);
    ck_assert_uint_eq(h[3], 4);
    ck_assert_uint_eq(frame_hdr_get(h), 0x01020304u);
}
END_TEST

START_TEST(test_frame_byte_by_byte_delivery)
{
    uint8_t wire[64];
    size_t n = make_frame(wire, 20, 0xAB);
    struct frame_dec d;
    frame_dec_init(&d, 100);
    const uint8_t *body;
    size_t len;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(frame_dec_next(&d, &body, &len), 0);
        ck_assert_int_eq(frame_dec_feed(&d, wire + i, 1), 0);
    }
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 1);
    ck_assert_uint_eq(len, 20);
    ck_assert_uint_eq(body[0], 0xAB);
    ck_assert_uint_eq(body[19], 0xAB);
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 0);
    ck_assert_uint_eq(frame_dec_pending(&d), 0);
    frame_dec_deinit(&d);
}
END_TEST

START_TEST(test_frame_many_frames_in_one_buffer)
{
    uint8_t wire[4096];
    size_t n = 0;
    for (uint32_t i = 1; i <= 50; i++) {
        n += make_frame(wire + n, i, (uint8_t)i);
    }
    struct frame_dec d;
    frame_dec_init(&d, 100);
    ck_assert_int_eq(frame_dec_feed(&d, wire, n), 0);
    const uint8_t *body;
    size_t len;
    for (uint32_t i = 1; i <= 50; i++) {
        ck_assert_int_eq(frame_dec_next(&d, &body, &len), 1);
        ck_assert_uint_eq(len, i);
        ck_assert_uint_eq(body[i - 1], i);
    }
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 0);
    frame_dec_deinit(&d);
}
END_TEST

START_TEST(test_frame_zero_length_is_an_error)
{
    uint8_t wire[4] = {0, 0, 0, 0};
    struct frame_dec d;
    frame_dec_init(&d, 100);
    ck_assert_int_eq(frame_dec_feed(&d, wire, 4), 0);
    const uint8_t *body;
    size_t len;
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), FERRY_EFRAMETOOLARGE);
    /* sticky: the stream cannot be resynchronised */
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), FERRY_EFRAMETOOLARGE);
    ck_assert_int_eq(frame_dec_feed(&d, wire, 4), FERRY_EFRAMETOOLARGE);
    frame_dec_deinit(&d);
}
END_TEST

START_TEST(test_frame_oversized_length_is_refused_before_allocating)
{
    uint8_t h[4];
    frame_hdr_put(h, 101);
    struct frame_dec d;
    frame_dec_init(&d, 100);
    ck_assert_int_eq(frame_dec_feed(&d, h, 4), 0);
    const uint8_t *body;
    size_t len;
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), FERRY_EFRAMETOOLARGE);
    ck_assert_uint_le(d.cap, FRAME_DEC_MIN_CAP);
    frame_dec_deinit(&d);
}
END_TEST

START_TEST(test_frame_memory_follows_bytes_not_header)
{
    /* A peer announces the largest allowed frame and sends only a little:
     * the buffer must stay proportional to what arrived. */
    struct frame_dec d;
    frame_dec_init(&d, FRAME_MAX_LEN_CEILING);
    uint8_t h[4];
    frame_hdr_put(h, FRAME_MAX_LEN_CEILING);
    ck_assert_int_eq(frame_dec_feed(&d, h, 4), 0);
    uint8_t junk[1000] = {0};
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(frame_dec_feed(&d, junk, sizeof(junk)), 0);
    }
    ck_assert_uint_le(d.cap, 2 * frame_dec_pending(&d) + 2 * FRAME_DEC_MIN_CAP);
    const uint8_t *body;
    size_t len;
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 0);
    frame_dec_deinit(&d);
}
END_TEST

START_TEST(test_frame_truncated_frame_waits)
{
    uint8_t wire[64];
    size_t n = make_frame(wire, 30, 1);
    struct frame_dec d;
    frame_dec_init(&d, 100);
    ck_assert_int_eq(frame_dec_feed(&d, wire, n - 1), 0);
    const uint8_t *body;
    size_t len;
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 0);
    ck_assert_uint_eq(frame_dec_pending(&d), n - 1);
    ck_assert_int_eq(frame_dec_feed(&d, wire + n - 1, 1), 0);
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 1);
    ck_assert_uint_eq(len, 30);
    frame_dec_deinit(&d);
}
END_TEST

START_TEST(test_frame_space_and_commit_read_in_place)
{
    uint8_t wire[300];
    size_t n = 0;
    n += make_frame(wire + n, 100, 7);
    n += make_frame(wire + n, 150, 8);
    struct frame_dec d;
    frame_dec_init(&d, 1000);
    size_t off = 0;
    int got = 0;
    while (off < n) {
        uint8_t *p;
        size_t room;
        ck_assert_int_eq(frame_dec_space(&d, 7, &p, &room), 0);
        ck_assert_uint_ge(room, 1);
        size_t k = n - off < 7 ? n - off : 7; /* a short read() */
        k = k < room ? k : room;
        memcpy(p, wire + off, k);
        frame_dec_commit(&d, k);
        off += k;
        const uint8_t *body;
        size_t len;
        while (frame_dec_next(&d, &body, &len) == 1) {
            ck_assert_uint_eq(len, got == 0 ? 100 : 150);
            ck_assert_uint_eq(body[len - 1], got == 0 ? 7 : 8);
            got++;
        }
    }
    ck_assert_int_eq(got, 2);
    frame_dec_deinit(&d);
}
END_TEST

START_TEST(test_frame_idle_buffer_is_released)
{
    uint8_t wire[64];
    size_t n = make_frame(wire, 10, 1);
    struct frame_dec d;
    frame_dec_init(&d, 100);
    ck_assert_int_eq(frame_dec_release_idle(&d), 0);
    ck_assert_int_eq(frame_dec_feed(&d, wire, n - 2), 0);
    ck_assert_int_eq(frame_dec_release_idle(&d), 0); /* partial frame pending */
    ck_assert_int_eq(frame_dec_feed(&d, wire + n - 2, 2), 0);
    const uint8_t *body;
    size_t len;
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 1);
    ck_assert_int_eq(frame_dec_release_idle(&d), 1);
    ck_assert_ptr_null(d.buf);
    /* and it works again afterwards */
    ck_assert_int_eq(frame_dec_feed(&d, wire, n), 0);
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 1);
    frame_dec_deinit(&d);
}
END_TEST

START_TEST(test_frame_largest_allowed_frame_is_accepted)
{
    const uint32_t max = 200000;
    uint8_t *wire = malloc(max + FRAME_HDR_LEN);
    ck_assert_ptr_nonnull(wire);
    size_t n = make_frame(wire, max, 0x5A);
    struct frame_dec d;
    frame_dec_init(&d, max);
    for (size_t off = 0; off < n; off += 999) {
        size_t k = n - off < 999 ? n - off : 999;
        ck_assert_int_eq(frame_dec_feed(&d, wire + off, k), 0);
    }
    const uint8_t *body;
    size_t len;
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 1);
    ck_assert_uint_eq(len, max);
    ck_assert_uint_le(d.cap, 2 * (size_t)max + 2 * FRAME_DEC_MIN_CAP);
    frame_dec_deinit(&d);
    free(wire);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("framing");
    tcase_add_test(tc, test_frame_header_is_big_endian);
    tcase_add_test(tc, test_frame_byte_by_byte_delivery);
    tcase_add_test(tc, test_frame_many_frames_in_one_buffer);
    tcase_add_test(tc, test_frame_truncated_frame_waits);
    tcase_add_test(tc, test_frame_space_and_commit_read_in_place);
    tcase_add_test(tc, test_frame_largest_allowed_frame_is_accepted);
    suite_add_tcase(s, tc);
    TCase *lim = tcase_create("limits");
    tcase_add_test(lim, test_frame_zero_length_is_an_error);
    tcase_add_test(lim, test_frame_oversized_length_is_refused_before_allocating);
    tcase_add_test(lim, test_frame_memory_follows_bytes_not_header);
    tcase_add_test(lim, test_frame_idle_buffer_is_released);
    suite_add_tcase(s, lim);
    return s;
}
