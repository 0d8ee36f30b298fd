/*
 * test_mailbox.c - bounded MPSC queue with eventfd or condvar wake-ups.
 */
#include "mailbox.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>

Suite *test_suite(void);

struct item {
    uint32_t producer;
    uint32_t seq;
};

START_TEST(test_mbox_bounded_and_fifo)
{
    struct mbox m;
    ck_assert_int_eq(mbox_init(&m, sizeof(struct item), 8, 1), 0);
    struct item in[10], out[10];
    for (uint32_t i = 0; i < 10; i++) {
        in[i] = (struct item){0, i};
    }
    ck_assert_uint_eq(mbox_try_post(&m, in, 10), 8); /* bounded */
    struct pollfd p = {.fd = mbox_fd(&m), .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 0), 1); /* eventfd signalled */
    int refused = 0;
    ck_assert_uint_eq(mbox_take(&m, out, 3, &refused), 3);
    ck_assert_int_eq(refused, 1);
    ck_assert_uint_eq(mbox_try_post(&m, in + 8, 2), 2); /* wraps around */
    ck_assert_uint_eq(mbox_take(&m, out + 3, 10, &refused), 7);
    ck_assert_int_eq(refused, 0);
    for (uint32_t i = 0; i < 10; i++) {
        ck_assert_uint_eq(out[i].seq, i);
    }
    ck_assert_uint_eq(mbox_len(&m), 0);
    ck_assert_int_eq(poll(&p, 1, 0), 0); /* counter cleared by take */
    mbox_deinit(&m);
}
END_TEST

struct prod_arg {
    struct mbox *m;
    uint32_t id;
    uint32_t n;
};

static void *producer(void *arg)
{
    struct prod_arg *a = arg;
    for (uint32_t i = 0; i < a->n; i++) {
        struct item it = {a->id, i};
        ck_assert_int_eq(mbox_post(a->m, &it, 1), 0); /* blocks while full */
    }
    return NULL;
}

static void run_producers(int use_eventfd)
{
    enum { P = 4, N = 20000 };
    struct mbox m;
    ck_assert_int_eq(mbox_init(&m, sizeof(struct item), 64, use_eventfd), 0);
    pthread_t th[P];
    struct prod_arg args[P];
    for (uint32_t i = 0; i < P; i++) {
        args[i] = (struct prod_arg){&m, i, N};
        pthread_create(&th[i], NULL, producer, &args[i]);
    }
    uint32_t next[P] = {0};
    uint32_t total = 0;
    struct item buf[32];
    while (total < P * N) {
        if (use_eventfd) {
            struct pollfd p = {.fd = mbox_fd(&m), .events = POLLIN};
            ck_assert_int_eq(poll(&p, 1, 10000), 1);
        } else {
            ck_assert_uint_gt(mbox_wait(&m, 10000), 0);
        }
        uint32_t n;
        while ((n = mbox_take(&m, buf, 32, NULL)) > 0) {
            for (uint32_t i = 0; i < n; i++) {
                /* per-producer FIFO */
                ck_assert_uint_eq(buf[i].seq, next[buf[i].producer]);
                next[buf[i].producer]++;
            }
            total += n;
        }
    }
    for (int i = 0; i < P; i++) {
        pthread_join(th[i], NULL);
    }
    mbox_deinit(&m);
}

START_TEST(test_mbox_many_producers_eventfd)
{
    run_producers(1);
}
END_TEST

START_TEST(test_mbox_many_producers_condvar)
{
    run_producers(0);
}
END_TEST

static void *blocked_poster(void *arg)
{
    struct mbox *m = arg;
    struct item it = {0, 0};
    return (void *)(intptr_t)mbox_post(m, &it, 1);
}

START_TEST(test_mbox_close_releases_blocked_producers)
{
    struct mbox m;
    ck_assert_int_eq(mbox_init(&m, sizeof(struct item), 1, 0), 0);
    struct item it = {0, 0};
    ck_assert_uint_eq(mbox_try_post(&m, &it, 1), 1);
    pthread_t th;
    pthread_create(&th, NULL, blocked_poster, &m);
    mbox_close(&m);
    void *ret;
    pthread_join(th, &ret);
    ck_assert_int_eq((int)(intptr_t)ret, -EPIPE);
    ck_assert_uint_eq(mbox_try_post(&m, &it, 1), 0);
    ck_assert_uint_eq(mbox_wait(&m, 0), 1);
    mbox_deinit(&m);
}
END_TEST

static void *waker(void *arg)
{
    mbox_wake(arg);
    return NULL;
}

/* A wake-up with nothing queued ends the wait (the store writer is woken
 * this way to save durable consumer state). A wake-up sent before the wait
 * is not lost either. */
START_TEST(test_mbox_wake_without_items_ends_wait)
{
    struct mbox m;
    ck_assert_int_eq(mbox_init(&m, sizeof(struct item), 4, 0), 0);
    mbox_wake(&m);
    ck_assert_uint_eq(mbox_wait(&m, -1), 0); /* returns: the wake-up came first */
    pthread_t th;
    pthread_create(&th, NULL, waker, &m);
    ck_assert_uint_eq(mbox_wait(&m, 60000), 0); /* returns long before the timeout */
    pthread_join(th, NULL);
    /* consumed: the next wait times out */
    ck_assert_uint_eq(mbox_wait(&m, 10), 0);
    mbox_deinit(&m);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("mailbox");
    TCase *tc = tcase_create("mailbox");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mbox_bounded_and_fifo);
    tcase_add_test(tc, test_mbox_many_producers_eventfd);
    tcase_add_test(tc, test_mbox_many_producers_condvar);
    tcase_add_test(tc, test_mbox_close_releases_blocked_producers);
    tcase_add_test(tc, test_mbox_wake_without_items_ends_wait);
    suite_add_tcase(s, tc);
    return s;
}
