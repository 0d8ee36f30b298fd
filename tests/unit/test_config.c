/*
 * test_config.c - defaults, config file, flags overriding the file.
 */
#include "config.h"
#include "log.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Suite *test_suite(void);

static char *write_file(const char *text)
{
    static char path[64];
    strcpy(path, "/tmp/ferryd-cfg-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(test_cfg_defaults)
{
    struct cfg c;
    cfg_defaults(&c);
    ck_assert_str_eq(c.listen_host, "0.0.0.0");
    ck_assert_int_eq(c.listen_port, 7373);
    ck_assert_str_eq(c.data_dir, "./ferry-data");
    ck_assert_int_eq(c.io_threads, 0);
    ck_assert_int_eq(c.log_level, LOG_INFO);
    ck_assert_uint_eq(c.max_topic_len, 255);
    ck_assert_uint_eq(c.max_topic_depth, 16);
}
END_TEST

START_TEST(test_cfg_file_then_flags_override)
{
    char *path = write_file("# ferryd.conf\n"
                            "listen 127.0.0.1:9000   # trailing comment\n"
                            "\n"
                            "   workers 3\n"
                            "io-threads 2\n"
                            "log_level debug\n"
                            "max_outbound_bytes 2m\n"
                            "data_dir /tmp/x\n");
    char *argv[] = {"ferryd", "--workers", "5", "--config", path, "--listen=:0", NULL};
    struct cfg c;
    cfg_defaults(&c);
    int help = -1;
    char err[256];
    ck_assert_int_eq(cfg_parse_args(&c, 6, argv, &help, err, sizeof(err)), 0);
    ck_assert_int_eq(help, 0);
    ck_assert_str_eq(c.listen_host, "127.0.0.1"); /* from the file */
    ck_assert_int_eq(c.listen_port, 0);           /* flag wins */
    ck_assert_int_eq(c.workers, 5);               /* flag wins, whatever its position */
    ck_assert_int_eq(c.io_threads, 2);
    ck_assert_int_eq(c.log_level, LOG_DEBUG);
    ck_assert_uint_eq(c.max_outbound, 2u * 1024 * 1024);
    ck_assert_str_eq(c.data_dir, "/tmp/x");
    ck_assert_str_eq(c.config_file, path);
    unlink(path);
}
END_TEST

START_TEST(test_cfg_errors_name_the_line)
{
    struct cfg c;
    char err[256];
    cfg_defaults(&c);
    char *path = write_file("workers 2\nbogus_key 1\n");
    ck_assert_int_eq(cfg_load_file(&c, path, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, ":2:"));
    ck_assert_ptr_nonnull(strstr(err, "bogus_key"));
    unlink(path);
    path = write_file("workers many\n");
    ck_assert_int_eq(cfg_load_file(&c, path, err, sizeof(err)), -EINVAL);
    unlink(path);
    path = write_file("workers\n");
    ck_assert_int_eq(cfg_load_file(&c, path, err, sizeof(err)), -EINVAL);
    unlink(path);
    ck_assert_int_lt(cfg_load_file(&c, "/nonexistent/ferryd.conf", err, sizeof(err)), 0);

    int help;
    char *a1[] = {"ferryd", "--nope", "1", NULL};
    ck_assert_int_eq(cfg_parse_args(&c, 3, a1, &help, err, sizeof(err)), -ENOENT);
    char *a2[] = {"ferryd", "--workers", NULL};
    ck_assert_int_eq(cfg_parse_args(&c, 2, a2, &help, err, sizeof(err)), -EINVAL);
    char *a3[] = {"ferryd", "--listen", "host:99999", NULL};
    ck_assert_int_eq(cfg_parse_args(&c, 3, a3, &help, err, sizeof(err)), -EINVAL);
    char *a4[] = {"ferryd", "--log-level", "loud", NULL};
    ck_assert_int_eq(cfg_parse_args(&c, 3, a4, &help, err, sizeof(err)), -EINVAL);
    char *a5[] = {"ferryd", "--max-topic-depth", "0", NULL};
    ck_assert_int_eq(cfg_parse_args(&c, 3, a5, &help, err, sizeof(err)), -EINVAL);
    char *a6[] = {"ferryd", "stray", NULL};
    ck_assert_int_eq(cfg_parse_args(&c, 2, a6, &help, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_cfg_help_and_version)
{
    struct cfg c;
    cfg_defaults(&c);
    int help;
    char err[64];
    char *a1[] = {"ferryd", "--workers", "2", "--help", NULL};
    ck_assert_int_eq(cfg_parse_args(&c, 4, a1, &help, err, sizeof(err)), 1);
    ck_assert_int_eq(help, 1);
    char *a2[] = {"ferryd", "--version", NULL};
    ck_assert_int_eq(cfg_parse_args(&c, 2, a2, &help, err, sizeof(err)), 1);
    ck_assert_int_eq(help, 2);
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "ferryd: listening on"));
}
END_TEST

START_TEST(test_cfg_consumer_max_idle_is_a_duration_default_off)
{
    struct cfg c;
    cfg_defaults(&c);
    ck_assert_uint_eq(c.consumer_max_idle_ms, 0);
    ck_assert_int_eq(cfg_set(&c, "consumer_max_idle", "10m"), 0);
    ck_assert_uint_eq(c.consumer_max_idle_ms, 600000);
    ck_assert_int_eq(cfg_set(&c, "consumer-max-idle", "250ms"), 0);
    ck_assert_uint_eq(c.consumer_max_idle_ms, 250);
    ck_assert_int_eq(cfg_set(&c, "consumer_max_idle", "off"), 0);
    ck_assert_uint_eq(c.consumer_max_idle_ms, 0);
    ck_assert_int_eq(cfg_set(&c, "consumer_max_idle", "7d"), 0);
    ck_assert_int_eq(cfg_set(&c, "consumer_max_idle", "soon"), -EINVAL);
    ck_assert_int_eq(cfg_set(&c, "consumer_max_idle", "-1s"), -EINVAL);
    ck_assert_uint_eq(c.consumer_max_idle_ms, 7ull * 86400 * 1000);
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "--consumer-max-idle DURATION"));
}
END_TEST

START_TEST(test_cfg_last_value_patterns_repeat_and_match)
{
    struct cfg c;
    cfg_defaults(&c);
    ck_assert_uint_eq(c.n_last_value, 0);
    ck_assert_int_eq(cfg_is_last_value(&c, "prices.eu", 9), 0);
    ck_assert_int_eq(cfg_set(&c, "last_value", "prices.>"), 0);
    ck_assert_int_eq(cfg_set(&c, "last-value", "state.*.now"), 0);
    ck_assert_int_eq(cfg_set(&c, "last_value", "prices.>"), 0); /* once */
    ck_assert_uint_eq(c.n_last_value, 2);
    ck_assert_int_eq(cfg_set(&c, "last_value", "bad..pattern"), -EINVAL);
    ck_assert_int_eq(cfg_is_last_value(&c, "prices.eu", 9), 1);
    ck_assert_int_eq(cfg_is_last_value(&c, "state.a.now", 11), 1);
    ck_assert_int_eq(cfg_is_last_value(&c, "state.a.b.now", 13), 0);
    ck_assert_int_eq(cfg_is_last_value(&c, "prices", 6), 0);
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "--last-value PATTERN"));
}
END_TEST

START_TEST(test_cfg_reactor_and_io_backend)
{
    struct cfg c;
    cfg_defaults(&c);
    ck_assert_int_eq(c.reactor_mode, REACTOR_MULTI);
    ck_assert_int_eq(c.io_backend, 0); /* epoll */
    ck_assert_int_eq(cfg_set(&c, "reactor", "single"), 0);
    ck_assert_int_eq(c.reactor_mode, REACTOR_SINGLE);
    ck_assert_int_eq(cfg_set(&c, "reactor", "single-pool"), 0);
    ck_assert_int_eq(c.reactor_mode, REACTOR_SINGLE_POOL);
    ck_assert_int_eq(cfg_set(&c, "reactor", "multi"), 0);
    ck_assert_int_eq(c.reactor_mode, REACTOR_MULTI);
    ck_assert_int_eq(cfg_set(&c, "reactor", "dual"), -EINVAL);
    ck_assert_int_eq(c.reactor_mode, REACTOR_MULTI);
    ck_assert_int_eq(cfg_set(&c, "io-backend", "uring"), 0);
    ck_assert_int_eq(c.io_backend, 1);
    ck_assert_int_eq(cfg_set(&c, "io_backend", "kqueue"), -EINVAL);
    ck_assert_int_eq(c.io_backend, 1);
    ck_assert_int_eq(cfg_set(&c, "io_backend", "epoll"), 0);
    ck_assert_int_eq(c.io_backend, 0);
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "--reactor multi|single-pool|single"));
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "--io-backend epoll|uring"));
}
END_TEST

START_TEST(test_cfg_tls_keys_and_listen_off)
{
    struct cfg c;
    cfg_defaults(&c);
    ck_assert_int_eq(c.tls_listen_port, -1); /* no TLS listener by default */
    ck_assert_int_eq(c.tls_client_cert, 0);
    ck_assert_int_eq(c.tls_identity, 0);
    char *path = write_file("tls_listen 127.0.0.1:7374\n"
                            "tls_cert /etc/ferry/server.pem\n"
                            "tls_key /etc/ferry/server.key\n"
                            "tls_ca /etc/ferry/ca.pem\n"
                            "tls_client_cert optional\n"
                            "tls_identity san-email\n"
                            "listen off\n");
    char err[256];
    ck_assert_int_eq(cfg_load_file(&c, path, err, sizeof(err)), 0);
    unlink(path);
    ck_assert_str_eq(c.tls_listen_host, "127.0.0.1");
    ck_assert_int_eq(c.tls_listen_port, 7374);
    ck_assert_str_eq(c.tls_cert, "/etc/ferry/server.pem");
    ck_assert_str_eq(c.tls_key, "/etc/ferry/server.key");
    ck_assert_str_eq(c.tls_ca, "/etc/ferry/ca.pem");
    ck_assert_int_eq(c.tls_client_cert, 1);
    ck_assert_int_eq(c.tls_identity, 2);
    ck_assert_int_eq(c.listen_port, -1);
    /* Flags, with dashes. */
    char *argv[] = {"ferryd",   "--tls-client-cert",
                    "required", "--tls-identity",
                    "cn",       "--tls-listen",
                    ":0",       "--listen",
                    "7373",     NULL};
    int help = 0;
    ck_assert_int_eq(cfg_parse_args(&c, 9, argv, &help, err, sizeof(err)), 0);
    ck_assert_int_eq(c.tls_client_cert, 2);
    ck_assert_int_eq(c.tls_identity, 1);
    ck_assert_int_eq(c.tls_listen_port, 0);
    ck_assert_int_eq(c.listen_port, 7373);
    ck_assert_int_eq(cfg_set(&c, "tls_client_cert", "maybe"), -EINVAL);
    ck_assert_int_eq(cfg_set(&c, "tls_identity", "dn"), -EINVAL);
    ck_assert_int_eq(cfg_set(&c, "tls_listen", "host:99999"), -EINVAL);
    ck_assert_int_eq(c.tls_client_cert, 2);
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "--tls-listen HOST:PORT"));
}
END_TEST

START_TEST(test_cfg_log_format_text_by_default_or_json)
{
    struct cfg c;
    cfg_defaults(&c);
    ck_assert_int_eq(c.log_format, LOG_FORMAT_TEXT);
    ck_assert_int_eq(cfg_set(&c, "log-format", "json"), 0);
    ck_assert_int_eq(c.log_format, LOG_FORMAT_JSON);
    ck_assert_int_eq(cfg_set(&c, "log_format", "xml"), -EINVAL);
    ck_assert_int_eq(c.log_format, LOG_FORMAT_JSON);
    ck_assert_int_eq(cfg_set(&c, "log_format", "text"), 0);
    ck_assert_int_eq(c.log_format, LOG_FORMAT_TEXT);
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "--log-format text|json"));
}
END_TEST

START_TEST(test_cfg_cluster_keys_off_by_default)
{
    struct cfg c;
    cfg_defaults(&c);
    ck_assert_str_eq(c.cluster_name, ""); /* cluster mode off */
    ck_assert_int_eq(c.broker_id, 0);
    ck_assert_int_eq(c.zookeeper_session_ms, 6000);
    char *path = write_file("cluster prod\n"
                            "zookeeper zk1:2181,zk2:2181\n"
                            "broker_id 3\n"
                            "advertise b3.example.com:7373\n");
    char err[256];
    ck_assert_int_eq(cfg_load_file(&c, path, err, sizeof(err)), 0);
    unlink(path);
    ck_assert_str_eq(c.cluster_name, "prod");
    ck_assert_str_eq(c.zookeeper, "zk1:2181,zk2:2181");
    ck_assert_int_eq(c.broker_id, 3);
    ck_assert_str_eq(c.advertise, "b3.example.com:7373");
    char *argv[] = {"ferryd", "--broker-id", "4",    "--zookeeper-session-ms",
                    "4000",   "--cluster",   "test", NULL};
    int help = 0;
    ck_assert_int_eq(cfg_parse_args(&c, 7, argv, &help, err, sizeof(err)), 0);
    ck_assert_int_eq(c.broker_id, 4);
    ck_assert_int_eq(c.zookeeper_session_ms, 4000);
    ck_assert_str_eq(c.cluster_name, "test");
    ck_assert_int_eq(cfg_set(&c, "broker_id", "0"), -EINVAL); /* ids start at 1 */
    ck_assert_int_eq(cfg_set(&c, "zookeeper_session_ms", "1000"), -EINVAL);
    ck_assert_int_eq(cfg_set(&c, "cluster", ""), -EINVAL);
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "--cluster NAME"));
}
END_TEST

/* $SYS updates: every 10 s by default (mosquitto's sys_interval), 0 turns
 * them off (values on subscribe only), at most a day. */
START_TEST(test_cfg_mqtt_sys_interval_seconds)
{
    struct cfg c;
    cfg_defaults(&c);
    ck_assert_uint_eq(c.mqtt_sys_interval, 10);
    ck_assert_int_eq(cfg_set(&c, "mqtt-sys-interval", "0"), 0);
    ck_assert_uint_eq(c.mqtt_sys_interval, 0);
    ck_assert_int_eq(cfg_set(&c, "mqtt_sys_interval", "86400"), 0);
    ck_assert_uint_eq(c.mqtt_sys_interval, 86400);
    ck_assert_int_eq(cfg_set(&c, "mqtt_sys_interval", "86401"), -EINVAL);
    ck_assert_int_eq(cfg_set(&c, "mqtt_sys_interval", "-1"), -EINVAL);
    ck_assert_ptr_nonnull(strstr(cfg_usage(), "--mqtt-sys-interval N"));
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_cfg_defaults);
    tcase_add_test(tc, test_cfg_file_then_flags_override);
    tcase_add_test(tc, test_cfg_errors_name_the_line);
    tcase_add_test(tc, test_cfg_help_and_version);
    tcase_add_test(tc, test_cfg_consumer_max_idle_is_a_duration_default_off);
    tcase_add_test(tc, test_cfg_last_value_patterns_repeat_and_match);
    tcase_add_test(tc, test_cfg_reactor_and_io_backend);
    tcase_add_test(tc, test_cfg_tls_keys_and_listen_off);
    tcase_add_test(tc, test_cfg_log_format_text_by_default_or_json);
    tcase_add_test(tc, test_cfg_cluster_keys_off_by_default);
    tcase_add_test(tc, test_cfg_mqtt_sys_interval_seconds);
    suite_add_tcase(s, tc);
    return s;
}
