/*
 * options.c - ferry_options and ferry_sub_options: plain data with setters.
 *
 * Setters validate what they can locally, so that a bad value is reported
 * where it was given, not later on the wire.
 */
#include "ferry_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int dup_str(char **dst, const char *src)
{
    char *p = NULL;
    if (src != NULL) {
        p = strdup(src);
        if (p == NULL) {
            return -ENOMEM;
        }
    }
    free(*dst);
    *dst = p;
    return 0;
}

static void servers_free(struct ferry_options *o)
{
    for (size_t i = 0; i < o->n_servers; i++) {
        free(o->servers[i].host);
        free(o->servers[i].port);
        free(o->servers[i].display);
    }
    memset(o->servers, 0, sizeof(o->servers));
    o->n_servers = 0;
}

/* Parse one "[tls://]host[:port]" or "[tls://][v6]:port" of len bytes into s. */
static int server_parse(struct ferry__server *s, const char *p, size_t len)
{
    while (len > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
        len--;
    }
    const char *given = p;
    size_t given_len = len;
    int is_tls = 0;
    if (len >= 6 && strncmp(p, "tls://", 6) == 0) {
        is_tls = 1;
        p += 6;
        len -= 6;
    } else if (len >= 6 && strncmp(p, "tcp://", 6) == 0) {
        p += 6;
        len -= 6;
    }
    if (len == 0) {
        return -EINVAL;
    }
    const char *host = p;
    size_t host_len;
    const char *port = NULL;
    size_t port_len = 0;
    if (*p == '[') {
        const char *close = memchr(p, ']', len);
        if (close == NULL || close == p + 1) {
            return -EINVAL;
        }
        host = p + 1;
        host_len = (size_t)(close - host);
        size_t rest = len - (size_t)(close + 1 - p);
        if (rest > 0) {
            if (close[1] != ':') {
                return -EINVAL;
            }
            port = close + 2;
            port_len = rest - 1;
        }
    } else {
        const char *colon = memchr(p, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - p)) != NULL) {
            return -EINVAL; /* a bare IPv6 address needs brackets */
        }
        host_len = colon != NULL ? (size_t)(colon - p) : len;
        if (colon != NULL) {
            port = colon + 1;
            port_len = len - host_len - 1;
        }
    }
    if (host_len == 0 || host_len > 253) {
        return -EINVAL;
    }
    char portbuf[8];
    if (port != NULL) {
        if (port_len == 0 || port_len > 5) {
            return -EINVAL;
        }
        unsigned long v = 0;
        for (size_t i = 0; i < port_len; i++) {
            if (port[i] < '0' || port[i] > '9') {
                return -EINVAL;
            }
            v = v * 10 + (unsigned long)(port[i] - '0');
        }
        if (v == 0 || v > 65535) {
            return -EINVAL;
        }
        memcpy(portbuf, port, port_len);
        portbuf[port_len] = '\0';
    } else {
        strcpy(portbuf, "7373");
    }
    s->host = strndup(host, host_len);
    s->port = strdup(portbuf);
    s->display = strndup(given, given_len);
    s->is_tls = is_tls;
    if (s->host == NULL || s->port == NULL || s->display == NULL) {
        free(s->host);
        free(s->port);
        free(s->display);
        memset(s, 0, sizeof(*s));
        return -ENOMEM;
    }
    if (port == NULL) {
        /* Show the port we will use. */
        size_t n = strlen(s->display) + 6;
        char *d = malloc(n + 1);
        if (d == NULL) {
            free(s->host);
            free(s->port);
            free(s->display);
            memset(s, 0, sizeof(*s));
            return -ENOMEM;
        }
        strcpy(d, s->display);
        strcat(d, ":");
        strcat(d, portbuf);
        free(s->display);
        s->display = d;
    }
    return 0;
}

FERRY_API int ferry_options_set_servers(ferry_options *o, const char *servers)
{
    if (o == NULL || servers == NULL || servers[0] == '\0') {
        return -EINVAL;
    }
    struct ferry_options tmp;
    memset(&tmp, 0, sizeof(tmp));
    const char *p = servers;
    int rc = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (tmp.n_servers == FERRY__MAX_SERVERS) {
            rc = -EINVAL;
            break;
        }
        rc = server_parse(&tmp.servers[tmp.n_servers], p, len);
        if (rc != 0) {
            break;
        }
        tmp.n_servers++;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    if (rc != 0) {
        servers_free(&tmp);
        return rc;
    }
    servers_free(o);
    memcpy(o->servers, tmp.servers, sizeof(tmp.servers));
    o->n_servers = tmp.n_servers;
    return 0;
}

void ferry__options_defaults(struct ferry_options *o)
{
    memset(o, 0, sizeof(*o));
    o->connect_timeout_ms = 5000;
    o->max_inflight = 1024;
    o->window_blocks = 1;
    o->reconnect = 1;
    o->reconnect_initial_ms = 100;
    o->reconnect_max_ms = 5000;
    o->reconnect_jitter_pct = 20;
    o->resend_unacked = 1;
    o->idempotent = 1;
    o->log_level = FERRY_LOG_INFO;
    o->tls_verify_name = 1;
}

void ferry__options_deinit(struct ferry_options *o)
{
    servers_free(o);
    free(o->name);
    free(o->token);
    free(o->user);
    free(o->password);
    free(o->tls_ca);
    free(o->tls_cert);
    free(o->tls_key);
    memset(o, 0, sizeof(*o));
}

int ferry__options_copy(struct ferry_options *dst, const struct ferry_options *src)
{
    *dst = *src;
    memset(dst->servers, 0, sizeof(dst->servers));
    dst->n_servers = 0;
    dst->name = dst->token = dst->user = dst->password = NULL;
    dst->tls_ca = dst->tls_cert = dst->tls_key = NULL;
    int rc = 0;
    for (size_t i = 0; i < src->n_servers && rc == 0; i++) {
        struct ferry__server *d = &dst->servers[i];
        d->host = strdup(src->servers[i].host);
        d->port = strdup(src->servers[i].port);
        d->display = strdup(src->servers[i].display);
        d->is_tls = src->servers[i].is_tls;
        dst->n_servers++;
        if (d->host == NULL || d->port == NULL || d->display == NULL) {
            rc = -ENOMEM;
        }
    }
    if (rc == 0) {
        rc = dup_str(&dst->name, src->name);
    }
    if (rc == 0) {
        rc = dup_str(&dst->token, src->token);
    }
    if (rc == 0) {
        rc = dup_str(&dst->user, src->user);
    }
    if (rc == 0) {
        rc = dup_str(&dst->password, src->password);
    }
    if (rc == 0) {
        rc = dup_str(&dst->tls_ca, src->tls_ca);
    }
    if (rc == 0) {
        rc = dup_str(&dst->tls_cert, src->tls_cert);
    }
    if (rc == 0) {
        rc = dup_str(&dst->tls_key, src->tls_key);
    }
    if (rc == 0 && dst->n_servers == 0) {
        rc = ferry_options_set_servers(dst, "127.0.0.1:7373");
    }
    if (rc != 0) {
        ferry__options_deinit(dst);
    }
    return rc;
}

FERRY_API int ferry_options_create(ferry_options **out)
{
    if (out == NULL) {
        return -EINVAL;
    }
    struct ferry_options *o = malloc(sizeof(*o));
    if (o == NULL) {
        return -ENOMEM;
    }
    ferry__options_defaults(o);
    *out = o;
    return 0;
}

FERRY_API void ferry_options_destroy(ferry_options *o)
{
    if (o == NULL) {
        return;
    }
    ferry__options_deinit(o);
    free(o);
}

FERRY_API int ferry_options_set_tls(ferry_options *o, const char *ca_file, const char *cert_file,
                                    const char *key_file, int verify_name)
{
    if (o == NULL || (cert_file == NULL) != (key_file == NULL) ||
        (ca_file != NULL && ca_file[0] == '\0') || (cert_file != NULL && cert_file[0] == '\0') ||
        (key_file != NULL && key_file[0] == '\0')) {
        return -EINVAL;
    }
    if (!ferry__tls_available()) {
        return -ENOTSUP;
    }
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    if (dup_str(&ca, ca_file) != 0 || dup_str(&cert, cert_file) != 0 ||
        dup_str(&key, key_file) != 0) {
        free(ca);
        free(cert);
        free(key);
        return -ENOMEM;
    }
    free(o->tls_ca);
    free(o->tls_cert);
    free(o->tls_key);
    o->tls_ca = ca;
    o->tls_cert = cert;
    o->tls_key = key;
    o->use_tls = 1;
    o->tls_verify_name = verify_name != 0;
    return 0;
}

FERRY_API int ferry_options_set_name(ferry_options *o, const char *name)
{
    if (o == NULL || name == NULL || !ferry__str_valid(name, 128)) {
        return -EINVAL;
    }
    return dup_str(&o->name, name);
}

FERRY_API int ferry_options_set_token(ferry_options *o, const char *token)
{
    if (o == NULL || (token != NULL && !ferry__str_valid(token, 4096))) {
        return -EINVAL;
    }
    int rc = dup_str(&o->token, token);
    if (rc == 0 && token != NULL) {
        free(o->user);
        free(o->password);
        o->user = o->password = NULL;
    }
    return rc;
}

FERRY_API int ferry_options_set_user_password(ferry_options *o, const char *user,
                                              const char *password)
{
    if (o == NULL || (user != NULL && !ferry__str_valid(user, 1024)) ||
        (password != NULL && !ferry__str_valid(password, 1024))) {
        return -EINVAL;
    }
    char *u = NULL;
    char *p = NULL;
    if (dup_str(&u, user) != 0 || dup_str(&p, user != NULL ? password : NULL) != 0) {
        free(u);
        return -ENOMEM;
    }
    free(o->user);
    free(o->password);
    o->user = u;
    o->password = p;
    if (user != NULL) {
        free(o->token);
        o->token = NULL;
    }
    return 0;
}

FERRY_API int ferry_options_set_keepalive_ms(ferry_options *o, uint32_t ms)
{
    if (o == NULL) {
        return -EINVAL;
    }
    o->keepalive_ms = ms;
    return 0;
}

FERRY_API int ferry_options_set_connect_timeout_ms(ferry_options *o, uint32_t ms)
{
    if (o == NULL || ms == 0 || ms > INT32_MAX) {
        return -EINVAL;
    }
    o->connect_timeout_ms = ms;
    return 0;
}

FERRY_API int ferry_options_set_max_inflight(ferry_options *o, uint32_t n)
{
    if (o == NULL || n == 0 || n > 1048576) {
        return -EINVAL;
    }
    o->max_inflight = n;
    return 0;
}

FERRY_API int ferry_options_set_window_blocks(ferry_options *o, int block)
{
    if (o == NULL) {
        return -EINVAL;
    }
    o->window_blocks = block != 0;
    return 0;
}

FERRY_API int ferry_options_set_ack_timeout_ms(ferry_options *o, uint32_t ms)
{
    if (o == NULL || ms > INT32_MAX) {
        return -EINVAL;
    }
    o->ack_timeout_ms = ms;
    return 0;
}

FERRY_API int ferry_options_set_reconnect(ferry_options *o, int enabled, uint32_t max_attempts,
                                          uint32_t initial_ms, uint32_t max_ms, uint32_t jitter_pct)
{
    if (o == NULL || initial_ms == 0 || max_ms < initial_ms || jitter_pct > 100 ||
        max_ms > INT32_MAX) {
        return -EINVAL;
    }
    o->reconnect = enabled != 0;
    o->reconnect_max_attempts = max_attempts;
    o->reconnect_initial_ms = initial_ms;
    o->reconnect_max_ms = max_ms;
    o->reconnect_jitter_pct = jitter_pct;
    return 0;
}

FERRY_API int ferry_options_set_resend_unacked(ferry_options *o, int resend)
{
    if (o == NULL) {
        return -EINVAL;
    }
    o->resend_unacked = resend != 0;
    return 0;
}

FERRY_API int ferry_options_set_idempotent(ferry_options *o, int on)
{
    if (o == NULL) {
        return -EINVAL;
    }
    o->idempotent = on != 0;
    return 0;
}

FERRY_API int ferry_options_set_log_cb(ferry_options *o, ferry_log_cb cb, void *userdata,
                                       enum ferry_log_level max_level)
{
    if (o == NULL || (int)max_level < FERRY_LOG_ERROR || (int)max_level > FERRY_LOG_DEBUG) {
        return -EINVAL;
    }
    o->log_cb = cb;
    o->log_ud = userdata;
    o->log_level = max_level;
    return 0;
}

FERRY_API int ferry_options_set_event_cb(ferry_options *o, ferry_event_cb cb, void *userdata)
{
    if (o == NULL) {
        return -EINVAL;
    }
    o->event_cb = cb;
    o->event_ud = userdata;
    return 0;
}

/* Subscription options. */

void ferry__sub_options_defaults(struct ferry_sub_options *o)
{
    memset(o, 0, sizeof(*o));
    o->start = FERRY_START_NEW;
    o->ack_mode = FERRY_ACK_NONE;
    o->queue_max = 65536;
}

void ferry__sub_options_deinit(struct ferry_sub_options *o)
{
    free(o->queue_group);
    free(o->durable);
    memset(o, 0, sizeof(*o));
}

int ferry__sub_options_copy(struct ferry_sub_options *dst, const struct ferry_sub_options *src)
{
    *dst = *src;
    dst->queue_group = dst->durable = NULL;
    if (dup_str(&dst->queue_group, src->queue_group) != 0 ||
        dup_str(&dst->durable, src->durable) != 0) {
        ferry__sub_options_deinit(dst);
        return -ENOMEM;
    }
    return 0;
}

FERRY_API int ferry_sub_options_create(ferry_sub_options **out)
{
    if (out == NULL) {
        return -EINVAL;
    }
    struct ferry_sub_options *o = malloc(sizeof(*o));
    if (o == NULL) {
        return -ENOMEM;
    }
    ferry__sub_options_defaults(o);
    *out = o;
    return 0;
}

FERRY_API void ferry_sub_options_destroy(ferry_sub_options *o)
{
    if (o == NULL) {
        return;
    }
    ferry__sub_options_deinit(o);
    free(o);
}

FERRY_API int ferry_sub_options_set_queue_group(ferry_sub_options *o, const char *group)
{
    if (o == NULL || (group != NULL && !ferry__str_valid(group, 255))) {
        return -EINVAL;
    }
    return dup_str(&o->queue_group, group != NULL && group[0] != '\0' ? group : NULL);
}

FERRY_API int ferry_sub_options_set_durable(ferry_sub_options *o, const char *name)
{
    if (o == NULL || (name != NULL && !ferry__str_valid(name, 255))) {
        return -EINVAL;
    }
    int is_set = name != NULL && name[0] != '\0';
    int rc = dup_str(&o->durable, is_set ? name : NULL);
    if (rc == 0 && is_set) {
        o->ack_mode = FERRY_ACK_EXPLICIT;
    }
    return rc;
}

FERRY_API int ferry_sub_options_set_start(ferry_sub_options *o, enum ferry_start start, int64_t arg)
{
    if (o == NULL) {
        return -EINVAL;
    }
    switch (start) {
    case FERRY_START_NEW:
    case FERRY_START_ALL:
    case FERRY_START_TIME:
    case FERRY_START_LAST_PER_KEY:
        break;
    case FERRY_START_SEQUENCE:
    case FERRY_START_LAST:
        if (arg < 1) {
            return -EINVAL;
        }
        break;
    default:
        return -EINVAL;
    }
    o->start = start;
    o->start_arg = arg;
    return 0;
}

FERRY_API int ferry_sub_options_set_ack_mode(ferry_sub_options *o, enum ferry_ack_mode mode)
{
    if (o == NULL || (mode != FERRY_ACK_NONE && mode != FERRY_ACK_EXPLICIT)) {
        return -EINVAL;
    }
    o->ack_mode = mode;
    return 0;
}

FERRY_API int ferry_sub_options_set_max_in_flight(ferry_sub_options *o, uint32_t n)
{
    if (o == NULL) {
        return -EINVAL;
    }
    o->max_in_flight = n;
    return 0;
}

FERRY_API int ferry_sub_options_set_ack_wait_ms(ferry_sub_options *o, uint32_t ms)
{
    if (o == NULL) {
        return -EINVAL;
    }
    o->ack_wait_ms = ms;
    return 0;
}

FERRY_API int ferry_sub_options_set_max_deliver(ferry_sub_options *o, uint32_t n)
{
    if (o == NULL) {
        return -EINVAL;
    }
    o->max_deliver = n;
    return 0;
}

FERRY_API int ferry_sub_options_set_queue_max(ferry_sub_options *o, size_t n)
{
    if (o == NULL || n == 0) {
        return -EINVAL;
    }
    o->queue_max = n;
    return 0;
}
