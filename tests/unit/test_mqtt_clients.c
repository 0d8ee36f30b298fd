/*
 * test_mqtt_clients.c - who holds each MQTT client id (broker/mqtt_clients.c):
 * claim and release, the takeover hand-over in both orders, chains of
 * takeovers, and a table grown past its first buckets.
 */
#include "mqtt_clients.h"

#include <check.h>
#include <stdio.h>

Suite *test_suite(void);

START_TEST(test_mqtt_clients_claim_release)
{
    struct mqtt_clients *r = mqtt_clients_create();
    ck_assert_ptr_nonnull(r);
    uint64_t prev = 0, next = 0;
    ck_assert_int_eq(mqtt_clients_claim(r, "k1", 10, &prev), 0);
    ck_assert_int_eq(mqtt_clients_claim(r, "k2", 20, &prev), 0);
    ck_assert_uint_eq(mqtt_clients_count(r), 2);
    ck_assert_int_eq(mqtt_clients_release(r, "k1", 10, &next), 0);
    ck_assert_uint_eq(mqtt_clients_count(r), 1);
    /* released: a new claim finds nobody */
    ck_assert_int_eq(mqtt_clients_claim(r, "k1", 11, &prev), 0);
    /* a release of a key never claimed, or claimed by nobody now */
    ck_assert_int_eq(mqtt_clients_release(r, "k3", 30, &next), 0);
    mqtt_clients_destroy(r);
}
END_TEST

/* The old holder ends after the claim: release names the claimant. */
START_TEST(test_mqtt_clients_takeover_old_ends_after)
{
    struct mqtt_clients *r = mqtt_clients_create();
    uint64_t prev = 0, next = 0;
    ck_assert_int_eq(mqtt_clients_claim(r, "k", 1, &prev), 0);
    ck_assert_int_eq(mqtt_clients_claim(r, "k", 2, &prev), 1);
    ck_assert_uint_eq(prev, 1);
    ck_assert_int_eq(mqtt_clients_release(r, "k", 1, &next), 1);
    ck_assert_uint_eq(next, 2);
    ck_assert_uint_eq(mqtt_clients_count(r), 1); /* 2 holds it */
    ck_assert_int_eq(mqtt_clients_release(r, "k", 2, &next), 0);
    ck_assert_uint_eq(mqtt_clients_count(r), 0);
    mqtt_clients_destroy(r);
}
END_TEST

/* The old holder ended before the claim: nothing to wait for. */
START_TEST(test_mqtt_clients_takeover_old_ended_before)
{
    struct mqtt_clients *r = mqtt_clients_create();
    uint64_t prev = 0, next = 0;
    ck_assert_int_eq(mqtt_clients_claim(r, "k", 1, &prev), 0);
    ck_assert_int_eq(mqtt_clients_release(r, "k", 1, &next), 0);
    prev = 77;
    ck_assert_int_eq(mqtt_clients_claim(r, "k", 2, &prev), 0);
    ck_assert_uint_eq(prev, 77); /* untouched */
    mqtt_clients_destroy(r);
}
END_TEST

/* 1 holds, 2 takes over, 3 takes over from 2 (still waiting): whoever of
 * 1 and 2 ends tells 3, the last holder, and the entry stays 3's. */
START_TEST(test_mqtt_clients_takeover_chain)
{
    struct mqtt_clients *r = mqtt_clients_create();
    uint64_t prev = 0, next = 0;
    ck_assert_int_eq(mqtt_clients_claim(r, "k", 1, &prev), 0);
    ck_assert_int_eq(mqtt_clients_claim(r, "k", 2, &prev), 1);
    ck_assert_uint_eq(prev, 1);
    ck_assert_int_eq(mqtt_clients_claim(r, "k", 3, &prev), 1);
    ck_assert_uint_eq(prev, 2);
    ck_assert_int_eq(mqtt_clients_release(r, "k", 2, &next), 1);
    ck_assert_uint_eq(next, 3);
    ck_assert_int_eq(mqtt_clients_release(r, "k", 1, &next), 1);
    ck_assert_uint_eq(next, 3);
    ck_assert_int_eq(mqtt_clients_release(r, "k", 3, &next), 0);
    ck_assert_uint_eq(mqtt_clients_count(r), 0);
    mqtt_clients_destroy(r);
}
END_TEST

START_TEST(test_mqtt_clients_many)
{
    struct mqtt_clients *r = mqtt_clients_create();
    char key[32];
    uint64_t prev, next;
    for (uint64_t i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "user-%llu", (unsigned long long)i);
        ck_assert_int_eq(mqtt_clients_claim(r, key, i + 1, &prev), 0);
    }
    ck_assert_uint_eq(mqtt_clients_count(r), 5000);
    for (uint64_t i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "user-%llu", (unsigned long long)i);
        ck_assert_int_eq(mqtt_clients_claim(r, key, i + 10000, &prev), 1);
        ck_assert_uint_eq(prev, i + 1);
    }
    for (uint64_t i = 0; i < 5000; i += 2) {
        snprintf(key, sizeof(key), "user-%llu", (unsigned long long)i);
        ck_assert_int_eq(mqtt_clients_release(r, key, i + 10000, &next), 0);
    }
    ck_assert_uint_eq(mqtt_clients_count(r), 2500);
    mqtt_clients_destroy(r);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("mqtt_clients");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_mqtt_clients_claim_release);
    tcase_add_test(tc, test_mqtt_clients_takeover_old_ends_after);
    tcase_add_test(tc, test_mqtt_clients_takeover_old_ended_before);
    tcase_add_test(tc, test_mqtt_clients_takeover_chain);
    tcase_add_test(tc, test_mqtt_clients_many);
    suite_add_tcase(s, tc);
    return s;
}
