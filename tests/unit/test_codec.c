/* Unit tests for proto/codec.c: protobuf-c behind a budget and string checks. */
#include "codec.h"
#include "ferry.h"
#include "wire.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_wire_varints_round_trip_and_refuse_overlong)
{
    static const uint64_t vals[] = {
        0, 1, 127, 128, 300, 16383, 16384, (1ull << 32) - 1, 1ull << 63, UINT64_MAX};
    static const size_t lens[] = {1, 1, 1, 2, 2, 2, 3, 5, 10, 10};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint8_t buf[WIRE_VARINT_MAX + 1];
        ck_assert_uint_eq(wire_varint_len(vals[i]), lens[i]);
        uint8_t *end = wire_varint_put(buf, vals[i]);
        ck_assert_uint_eq((size_t)(end - buf), lens[i]);
        const uint8_t *p = buf;
        uint64_t v = 42;
        ck_assert_int_eq(wire_varint_get(&p, end, &v), 0);
        ck_assert_uint_eq(v, vals[i]);
        ck_assert_ptr_eq(p, end);
        /* Cut short by one byte: refused, nothing moved. */
        p = buf;
        v = 42;
        ck_assert_int_eq(wire_varint_get(&p, end - 1, &v), -1);
        ck_assert_ptr_eq(p, buf);
        ck_assert_uint_eq(v, 42);
    }
    /* Eleven bytes, and a 10th byte carrying more than bit 63: refused. */
    const uint8_t eleven[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    const uint8_t over[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    const uint8_t *p = eleven;
    uint64_t v;
    ck_assert_int_eq(wire_varint_get(&p, eleven + sizeof(eleven), &v), -1);
    p = over;
    ck_assert_int_eq(wire_varint_get(&p, over + sizeof(over), &v), -1);
    /* A non-minimal encoding is still the same number (protobuf accepts it). */
    const uint8_t padded[3] = {0x85, 0x80, 0x00};
    p = padded;
    ck_assert_int_eq(wire_varint_get(&p, padded + 3, &v), 0);
    ck_assert_uint_eq(v, 5);
}
END_TEST

Suite *test_suite(void);

static struct codec_arena arena;

static void setup(void)
{
    codec_arena_init(&arena);
}

static void teardown(void)
{
    codec_arena_deinit(&arena);
}

/* Encode f, pass it through a frame decoder, decode it, and check that
 * re-encoding the result gives the same bytes. Returns the decoded frame. */
static Ferry__Frame *round_trip(const Ferry__Frame *f)
{
    uint8_t *wire;
    size_t n;
    ck_assert_int_eq(codec_frame_encode_alloc(f, &wire, &n), 0);
    ck_assert_uint_eq(n, codec_frame_size(f));

    struct frame_dec d;
    frame_dec_init(&d, FRAME_MAX_LEN_DEFAULT);
    ck_assert_int_eq(frame_dec_feed(&d, wire, n), 0);
    const uint8_t *body;
    size_t len;
    ck_assert_int_eq(frame_dec_next(&d, &body, &len), 1);
    Ferry__Frame *out = NULL;
    ck_assert_int_eq(codec_frame_decode(&arena, body, len, &out), 0);
    ck_assert_int_eq(out->body_case, f->body_case);

    uint8_t *again;
    size_t m;
    ck_assert_int_eq(codec_frame_encode_alloc(out, &again, &m), 0);
    ck_assert_uint_eq(m, n);
    ck_assert_mem_eq(again, wire, n);
    free(again);
    free(wire);
    frame_dec_deinit(&d);
    return out;
}

static Ferry__Header hdr_a = FERRY__HEADER__INIT;
static Ferry__Header *hdrs[1];

START_TEST(test_codec_round_trip_every_message)
{
    hdr_a.key = "trace";
    hdr_a.value = "ab\xc3\xa9"; /* "abé" */
    hdrs[0] = &hdr_a;
    uint64_t ids[3] = {1, 300, UINT64_MAX};

    Ferry__Connect connect = FERRY__CONNECT__INIT;
    connect.protocol_version = 1;
    connect.client_name = "unit";
    connect.username = "alice";
    connect.password = "s3cret";
    connect.keepalive_ms = 5000;
    Ferry__Connected connected = FERRY__CONNECTED__INIT;
    connected.protocol_version = 1;
    connected.server_id = "srv";
    connected.max_frame_len = 1000;
    connected.sync_policy = FERRY__SYNC_POLICY__SYNC_NONE;
    Ferry__Publish publish = FERRY__PUBLISH__INIT;
    publish.id = 42;
    publish.topic = "orders.eu.created";
    publish.payload.data = (uint8_t *)"hello";
    publish.payload.len = 5;
    publish.n_headers = 1;
    publish.headers = hdrs;
    publish.key.data = (uint8_t *)"k\0y";
    publish.key.len = 3;
    publish.want_ack = 1;
    Ferry__PubAck puback = FERRY__PUB_ACK__INIT;
    puback.id = 42;
    puback.sequence = 7;
    Ferry__Subscribe sub = FERRY__SUBSCRIBE__INIT;
    sub.sub_id = 9;
    sub.pattern = "orders.*.>";
    sub.queue_group = "workers";
    sub.durable_name = "billing";
    sub.start = FERRY__START_POSITION__START_TIME;
    sub.start_time = -5;
    sub.ack_mode = FERRY__ACK_MODE__ACK_EXPLICIT;
    sub.max_in_flight = 10;
    Ferry__SubAck suback = FERRY__SUB_ACK__INIT;
    suback.sub_id = 9;
    suback.code = FERRY__ERROR_CODE__ERROR_INVALID_PATTERN;
    suback.text = "bad";
    Ferry__Deliver deliver = FERRY__DELIVER__INIT;
    deliver.n_sub_ids = 3;
    deliver.sub_ids = ids;
    deliver.topic = "t";
    deliver.sequence = 99;
    deliver.payload = publish.payload;
    deliver.attempt = 2;
    Ferry__Ack ack = FERRY__ACK__INIT;
    ack.sub_id = 9;
    ack.sequence = 99;
    ack.kind = FERRY__ACK__KIND__NAK;
    Ferry__Unsubscribe unsub = FERRY__UNSUBSCRIBE__INIT;
    unsub.sub_id = 9;
    Ferry__Ping ping = FERRY__PING__INIT;
    ping.nonce = 123456789;
    Ferry__Pong pong = FERRY__PONG__INIT;
    pong.nonce = 123456789;
    Ferry__Error err = FERRY__ERROR__INIT;
    err.code = FERRY__ERROR_CODE__ERROR_SLOW_CONSUMER;
    err.text = "slow";
    err.ref_id = 5;
    err.ref_kind = FERRY__ERROR__REF_KIND__REF_SUBSCRIPTION;
    err.is_fatal = 1;
    Ferry__Disconnect disc = FERRY__DISCONNECT__INIT;
    disc.text = "bye";
    Ferry__StatsRequest statsreq = FERRY__STATS_REQUEST__INIT;
    Ferry__AdminRequest areq = FERRY__ADMIN_REQUEST__INIT;
    areq.id = 3;
    areq.request_case = FERRY__ADMIN_REQUEST__REQUEST_STATS;
    areq.stats = &statsreq;
    Ferry__TopicInfo ti = FERRY__TOPIC_INFO__INIT;
    ti.name = "a.b";
    ti.messages = 10;
    Ferry__TopicInfo *tis[1] = {&ti};
    Ferry__AdminReply arep = FERRY__ADMIN_REPLY__INIT;
    arep.id = 3;
    arep.n_topics = 1;
    arep.topics = tis;

    struct {
        Ferry__Frame__BodyCase c;
        void *m;
    } all[] = {
        {FERRY__FRAME__BODY_CONNECT, &connect},   {FERRY__FRAME__BODY_CONNECTED, &connected},
        {FERRY__FRAME__BODY_PUBLISH, &publish},   {FERRY__FRAME__BODY_PUB_ACK, &puback},
        {FERRY__FRAME__BODY_SUBSCRIBE, &sub},     {FERRY__FRAME__BODY_SUB_ACK, &suback},
        {FERRY__FRAME__BODY_DELIVER, &deliver},   {FERRY__FRAME__BODY_ACK, &ack},
        {FERRY__FRAME__BODY_UNSUBSCRIBE, &unsub}, {FERRY__FRAME__BODY_PING, &ping},
        {FERRY__FRAME__BODY_PONG, &pong},         {FERRY__FRAME__BODY_ERROR, &err},
        {FERRY__FRAME__BODY_DISCONNECT, &disc},   {FERRY__FRAME__BODY_ADMIN_REQUEST, &areq},
        {FERRY__FRAME__BODY_ADMIN_REPLY, &arep},
    };
    /* Every case of the oneof is covered by the table above. */
    ck_assert_uint_eq(sizeof(all) / sizeof(all[0]), ferry__frame__descriptor.n_fields);
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        Ferry__Frame f = FERRY__FRAME__INIT;
        f.body_case = all[i].c;
        f.connect = all[i].m; /* the oneof members share one union */
        Ferry__Frame *out = round_trip(&f);
        ck_assert_str_ne(codec_frame_name(out), "empty");
    }

    /* and field values survive, spot-checked on the richest messages */
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PUBLISH;
    f.publish = &publish;
    Ferry__Frame *out = round_trip(&f);
    ck_assert_str_eq(out->publish->topic, "orders.eu.created");
    ck_assert_uint_eq(out->publish->payload.len, 5);
    ck_assert_mem_eq(out->publish->payload.data, "hello", 5);
    ck_assert_uint_eq(out->publish->n_headers, 1);
    ck_assert_str_eq(out->publish->headers[0]->value, "ab\xc3\xa9");
    ck_assert_uint_eq(out->publish->key.len, 3);
    ck_assert_int_eq(out->publish->want_ack, 1);
    f.body_case = FERRY__FRAME__BODY_DELIVER;
    f.deliver = &deliver;
    out = round_trip(&f);
    ck_assert_uint_eq(out->deliver->n_sub_ids, 3);
    ck_assert_uint_eq(out->deliver->sub_ids[2], UINT64_MAX);
    ck_assert_uint_eq(out->deliver->attempt, 2);
}
END_TEST

/* Encode a Publish whose topic has the given bytes (protobuf-c packs the
 * char * with strlen, so the field is written by hand). */
static size_t publish_with_topic(uint8_t *out, const uint8_t *topic, size_t tlen)
{
    size_t k = 0;
    uint8_t inner[256];
    size_t m = 0;
    inner[m++] = (2 << 3) | 2; /* Publish.topic */
    inner[m++] = (uint8_t)tlen;
    memcpy(inner + m, topic, tlen);
    m += tlen;
    out[k++] = (3 << 3) | 2; /* Frame.publish */
    out[k++] = (uint8_t)m;
    memcpy(out + k, inner, m);
    return k + m;
}

START_TEST(test_codec_rejects_nul_in_string)
{
    uint8_t body[300];
    Ferry__Frame *f;
    size_t n = publish_with_topic(body, (const uint8_t *)"a.b", 3);
    ck_assert_int_eq(codec_frame_decode(&arena, body, n, &f), 0);
    ck_assert_str_eq(f->publish->topic, "a.b");
    n = publish_with_topic(body, (const uint8_t *)"a\0b", 3);
    ck_assert_int_eq(codec_frame_decode(&arena, body, n, &f), FERRY_EPROTOCOL);
}
END_TEST

START_TEST(test_codec_rejects_invalid_utf8)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"caf\xc3\xa9", 1},      /* é */
        {"\xe2\x82\xac", 1},     /* € */
        {"\xf0\x9f\x9a\xa2", 1}, /* 🚢 */
        {"\xc3", 0},             /* truncated */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"\xed\xa0\x80", 0},     /* surrogate */
        {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"\xff", 0},
        {"\x80", 0}, /* lone continuation */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t body[300];
        Ferry__Frame *f;
        size_t n = publish_with_topic(body, (const uint8_t *)cases[i].s, strlen(cases[i].s));
        int rc = codec_frame_decode(&arena, body, n, &f);
        ck_assert_msg(rc == (cases[i].ok ? 0 : FERRY_EPROTOCOL), "case %zu: rc %d", i, rc);
    }
}
END_TEST

START_TEST(test_codec_bad_strings_in_nested_messages_are_rejected)
{
    /* Publish.headers[0].key = "a\0" */
    uint8_t body[] = {(3 << 3) | 2, 6, (4 << 3) | 2, 4, (1 << 3) | 2, 2, 'a', 0};
    Ferry__Frame *f;
    ck_assert_int_eq(codec_frame_decode(&arena, body, sizeof(body), &f), FERRY_EPROTOCOL);
    body[7] = 'b';
    ck_assert_int_eq(codec_frame_decode(&arena, body, sizeof(body), &f), 0);
    ck_assert_str_eq(f->publish->headers[0]->key, "ab");
}
END_TEST

START_TEST(test_codec_payload_may_hold_any_bytes)
{
    uint8_t body[] = {(3 << 3) | 2, 4, (3 << 3) | 2, 2, 0, 0xFF};
    Ferry__Frame *f;
    ck_assert_int_eq(codec_frame_decode(&arena, body, sizeof(body), &f), 0);
    ck_assert_uint_eq(f->publish->payload.len, 2);
    ck_assert_uint_eq(f->publish->payload.data[1], 0xFF);
}
END_TEST

START_TEST(test_codec_empty_oneof_is_rejected)
{
    Ferry__Frame *f;
    uint8_t unknown_only[] = {0x98, 0x06, 1}; /* unknown field 99, varint 1 */
    ck_assert_int_eq(codec_frame_decode(&arena, unknown_only, sizeof(unknown_only), &f),
                     FERRY_EUNKNOWNMSG);
    /* a message number this version does not know (field 16, empty) */
    uint8_t future_message[] = {0x82, 0x01, 0};
    ck_assert_int_eq(codec_frame_decode(&arena, future_message, sizeof(future_message), &f),
                     FERRY_EUNKNOWNMSG);
}
END_TEST

START_TEST(test_codec_unknown_fields_are_ignored)
{
    /* Ping{nonce=5, field 50 = "zz"} */
    uint8_t body[] = {(10 << 3) | 2, 7, (1 << 3) | 0, 5, 0x92, 0x03, 2, 'z', 'z'};
    Ferry__Frame *f;
    ck_assert_int_eq(codec_frame_decode(&arena, body, sizeof(body), &f), 0);
    ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_PING);
    ck_assert_uint_eq(f->ping->nonce, 5);
}
END_TEST

START_TEST(test_codec_field_number_zero_is_rejected)
{
    /* Ping{nonce=5} followed by field 0 (wire type 1) with a non-minimal key
     * 0x81 0x00, which protobuf-c alone would keep as an unknown field. */
    uint8_t body[] = {(10 << 3) | 2, 2, (1 << 3) | 0, 5, 0x81, 0x00, 1, 2, 3, 4, 5, 6, 7, 8};
    Ferry__Frame *f;
    ck_assert_int_eq(codec_frame_decode(&arena, body, sizeof(body), &f), FERRY_EPROTOCOL);
    ck_assert_int_eq(codec_frame_decode(&arena, body, 4, &f), 0);
}
END_TEST

START_TEST(test_codec_budget_allows_ordinary_headers)
{
    /* 64 small headers (the protocol's limit) decode within the budget. */
    uint8_t body[2048];
    size_t k = 0;
    body[k++] = (3 << 3) | 2;
    size_t len_at = k;
    k += 2; /* two-byte length, filled below */
    size_t start = k;
    for (int i = 0; i < 64; i++) {
        body[k++] = (4 << 3) | 2;
        body[k++] = 6;
        body[k++] = (1 << 3) | 2;
        body[k++] = 1;
        body[k++] = (uint8_t)('a' + i % 26);
        body[k++] = (2 << 3) | 2;
        body[k++] = 1;
        body[k++] = 'v';
    }
    size_t inner = k - start;
    body[len_at] = (uint8_t)(inner | 0x80);
    body[len_at + 1] = (uint8_t)(inner >> 7);
    Ferry__Frame *f;
    ck_assert_int_eq(codec_frame_decode(&arena, body, k, &f), 0);
    ck_assert_uint_eq(f->publish->n_headers, 64);
    ck_assert_str_eq(f->publish->headers[63]->value, "v");
}
END_TEST

START_TEST(test_codec_truncated_body_is_rejected)
{
    Ferry__Ping ping = FERRY__PING__INIT;
    ping.nonce = 0xFFFFFFFFFFull;
    Ferry__Frame fr = FERRY__FRAME__INIT;
    fr.body_case = FERRY__FRAME__BODY_PING;
    fr.ping = &ping;
    uint8_t wire[64];
    size_t n;
    ck_assert_int_eq(codec_frame_encode(&fr, wire, sizeof(wire), &n), 0);
    Ferry__Frame *f;
    for (size_t cut = 1; cut < n - FRAME_HDR_LEN; cut++) {
        ck_assert_int_eq(codec_frame_decode(&arena, wire + FRAME_HDR_LEN, cut, &f),
                         FERRY_EPROTOCOL);
    }
    ck_assert_int_eq(codec_frame_decode(&arena, wire + FRAME_HDR_LEN, n - FRAME_HDR_LEN, &f), 0);
}
END_TEST

START_TEST(test_codec_encode_refuses_small_buffer)
{
    Ferry__Ping ping = FERRY__PING__INIT;
    ping.nonce = 1;
    Ferry__Frame fr = FERRY__FRAME__INIT;
    fr.body_case = FERRY__FRAME__BODY_PING;
    fr.ping = &ping;
    uint8_t wire[64];
    size_t n = 0;
    ck_assert_int_eq(codec_frame_encode(&fr, wire, 3, &n), -ENOSPC);
    ck_assert_uint_eq(n, 0); /* out-parameter untouched on failure */
}
END_TEST

START_TEST(test_codec_budget_stops_allocation_amplification)
{
    /* A Publish made of 20,000 empty headers: 2 bytes each on the wire, about
     * 50 bytes each decoded. The budget refuses it. */
    const size_t n_hdr = 20000;
    size_t inner = n_hdr * 2;
    uint8_t *body = malloc(inner + 16);
    size_t k = 0;
    body[k++] = (3 << 3) | 2;
    size_t v = inner;
    while (v >= 0x80) {
        body[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    body[k++] = (uint8_t)v;
    for (size_t i = 0; i < n_hdr; i++) {
        body[k++] = (4 << 3) | 2;
        body[k++] = 0;
    }
    Ferry__Frame *f;
    ck_assert_int_eq(codec_frame_decode(&arena, body, k, &f), FERRY_EPROTOCOL);
    ck_assert_uint_le(arena.used, CODEC_BUDGET(k));
    free(body);
}
END_TEST

START_TEST(test_codec_random_bytes_never_crash)
{
    /* Random bodies: each either decodes (and then re-encodes) or is refused. */
    srand(12345);
    uint8_t body[512];
    int decoded = 0;
    for (int round = 0; round < 20000; round++) {
        size_t n = 1 + (size_t)(rand() % (int)sizeof(body));
        for (size_t i = 0; i < n; i++) {
            body[i] = (uint8_t)rand();
        }
        if (round % 2) {
            body[0] = (10 << 3) | 2; /* bias towards a known message */
        }
        Ferry__Frame *f = NULL;
        int rc = codec_frame_decode(&arena, body, n, &f);
        ck_assert(rc == 0 || rc == FERRY_EPROTOCOL || rc == FERRY_EUNKNOWNMSG);
        if (rc == 0) {
            decoded++;
            ck_assert_int_ne(f->body_case, FERRY__FRAME__BODY__NOT_SET);
            ck_assert_uint_gt(codec_frame_size(f), FRAME_HDR_LEN);
        }
    }
    ck_assert_int_gt(decoded, 0);
}
END_TEST

START_TEST(test_codec_deliver_prefix_plus_shared_body_is_a_frame)
{
    struct codec_deliver d = {.topic = "orders.eu",
                              .topic_len = 9,
                              .sequence = 77,
                              .publish_time = 1700000000000000000ll,
                              .payload = "payload",
                              .payload_len = 7};
    size_t blen = codec_deliver_body_len(&d);
    uint8_t *shared = malloc(blen);
    ck_assert_uint_eq(codec_deliver_body_put(&d, shared, NULL), blen);

    uint64_t ids[][3] = {{5, 0, 0}, {1, 200, 1ull << 40}};
    size_t nids[] = {1, 3};
    for (int c = 0; c < 2; c++) {
        uint8_t wire[4096];
        size_t k = codec_deliver_prefix(wire, ids[c], nids[c], blen);
        ck_assert_uint_le(k, CODEC_DELIVER_PREFIX_MAX(nids[c]));
        memcpy(wire + k, shared, blen);
        struct frame_dec fd;
        frame_dec_init(&fd, 4096);
        ck_assert_int_eq(frame_dec_feed(&fd, wire, k + blen), 0);
        const uint8_t *body;
        size_t len;
        ck_assert_int_eq(frame_dec_next(&fd, &body, &len), 1);
        ck_assert_uint_eq(frame_dec_pending(&fd), 0);
        Ferry__Frame *f;
        ck_assert_int_eq(codec_frame_decode(&arena, body, len, &f), 0);
        ck_assert_int_eq(f->body_case, FERRY__FRAME__BODY_DELIVER);
        ck_assert_uint_eq(f->deliver->n_sub_ids, nids[c]);
        for (size_t i = 0; i < nids[c]; i++) {
            ck_assert_uint_eq(f->deliver->sub_ids[i], ids[c][i]);
        }
        ck_assert_str_eq(f->deliver->topic, "orders.eu");
        ck_assert_uint_eq(f->deliver->sequence, 77);
        ck_assert_mem_eq(f->deliver->payload.data, "payload", 7);
        frame_dec_deinit(&fd);
    }
    free(shared);
}
END_TEST

/* The hand-written Deliver body is byte for byte what protobuf-c packs, for
 * every combination of present and absent fields, and its spans point at
 * the payload, the run of headers and the key. */
START_TEST(test_codec_deliver_body_matches_protobuf_c)
{
    static const struct codec_hdr want_hdrs[] = {
        {"trace", 5, "abc", 3}, {"", 0, "only-value", 10}, {"only-key", 8, "", 0}, {"", 0, "", 0}};
    uint8_t big[300];
    memset(big, 'x', sizeof(big));
    for (int mask = 0; mask < 256; mask++) {
        struct codec_deliver in = {.topic = "a.b", .topic_len = 3};
        Ferry__Deliver d = FERRY__DELIVER__INIT;
        d.topic = "a.b";
        Ferry__Header ph[4], *pp[4];
        if (mask & 1) {
            in.sequence = d.sequence = 1ull << 40;
        }
        if (mask & 2) {
            in.publish_time = d.publish_time = 1700000000123456789ll;
        }
        if (mask & 4) { /* a payload whose length takes two varint bytes */
            in.payload = big;
            in.payload_len = d.payload.len = sizeof(big);
            d.payload.data = big;
        }
        if (mask & 8) {
            in.headers = want_hdrs;
            in.n_headers = d.n_headers = 4;
            for (int i = 0; i < 4; i++) {
                ferry__header__init(&ph[i]);
                ph[i].key = (char *)want_hdrs[i].key;
                ph[i].value = (char *)want_hdrs[i].value;
                pp[i] = &ph[i];
            }
            d.headers = pp;
        }
        if (mask & 16) {
            in.key = "k-1";
            in.key_len = d.key.len = 3;
            d.key.data = (uint8_t *)"k-1";
        }
        if (mask & 32) {
            in.attempt = d.attempt = 3;
        }
        if (mask & 64) {
            in.missed = d.missed = 9;
        }
        if (mask & 128) { /* reply_to: last, after every field the spans name */
            in.reply_to = "_INBOX.abc.7";
            in.reply_to_len = 12;
            d.reply_to = "_INBOX.abc.7";
        }
        size_t want = ferry__deliver__get_packed_size(&d);
        ck_assert_uint_eq(codec_deliver_body_len(&in), want);
        uint8_t a[1024], b[1024];
        ferry__deliver__pack(&d, a);
        struct codec_deliver_spans sp;
        ck_assert_uint_eq(codec_deliver_body_put(&in, b, &sp), want);
        ck_assert_mem_eq(a, b, want);
        ck_assert_uint_eq(sp.payload_len, in.payload_len);
        ck_assert_uint_eq(sp.key_len, in.key_len);
        if (in.payload_len) {
            ck_assert_mem_eq(b + sp.payload_off, big, sizeof(big));
        }
        if (in.key_len) {
            ck_assert_mem_eq(b + sp.key_off, "k-1", 3);
        }
        const uint8_t *h = b + sp.hdr_off, *hend = h + sp.hdr_len;
        struct codec_hdr got;
        for (size_t i = 0; i < in.n_headers; i++) {
            ck_assert_int_eq(codec_header_next(&h, hend, &got), 1);
            ck_assert_uint_eq(got.key_len, want_hdrs[i].key_len);
            ck_assert_uint_eq(got.value_len, want_hdrs[i].value_len);
            ck_assert_mem_eq(got.key, want_hdrs[i].key, got.key_len);
            ck_assert_mem_eq(got.value, want_hdrs[i].value, got.value_len);
        }
        ck_assert_int_eq(codec_header_next(&h, hend, &got), 0);
    }
    /* Not a run of headers: another field, a length past the end. */
    const uint8_t other[] = {(5 << 3) | 2, 1, 'x'};
    const uint8_t *p = other;
    struct codec_hdr got;
    ck_assert_int_eq(codec_header_next(&p, other + sizeof(other), &got), -1);
    const uint8_t cut[] = {(6 << 3) | 2, 5, (1 << 3) | 2, 1};
    p = cut;
    ck_assert_int_eq(codec_header_next(&p, cut + sizeof(cut), &got), -1);
}
END_TEST

/* Large payloads: the same bytes as protobuf-c's, whatever the length
 * (around 4 KiB, not a multiple of 64, past 64 KiB) and wherever the body
 * starts (every alignment of the destination), and nothing written past
 * the end. */
START_TEST(test_codec_deliver_body_large_payloads)
{
    static const size_t lens[] = {4095, 4096, 4097, 4096 + 63, 16384, 70001};
    uint8_t *src = malloc(70001);
    uint8_t *a = malloc(70100), *b = malloc(70100 + 16);
    ck_assert(src && a && b);
    for (size_t i = 0; i < 70001; i++) {
        src[i] = (uint8_t)(i * 131 + (i >> 8));
    }
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        Ferry__Deliver d = FERRY__DELIVER__INIT;
        d.topic = "big.t";
        d.publish_time = 1700000000123456789ll;
        d.payload.data = src;
        d.payload.len = lens[k];
        d.attempt = 1;
        struct codec_deliver in = {.topic = "big.t",
                                   .topic_len = 5,
                                   .publish_time = d.publish_time,
                                   .payload = src,
                                   .payload_len = lens[k],
                                   .attempt = 1};
        size_t want = ferry__deliver__get_packed_size(&d);
        ck_assert_uint_eq(codec_deliver_body_len(&in), want);
        ferry__deliver__pack(&d, a);
        for (size_t off = 0; off < 16; off++) {
            memset(b, 0xa5, 70100 + 16);
            struct codec_deliver_spans sp;
            ck_assert_uint_eq(codec_deliver_body_put(&in, b + off, &sp), want);
            ck_assert_mem_eq(a, b + off, want);
            ck_assert_uint_eq(sp.payload_len, lens[k]);
            ck_assert_mem_eq(b + off + sp.payload_off, src, lens[k]);
            ck_assert_uint_eq(b[off + want], 0xa5);
        }
    }
    free(src);
    free(a);
    free(b);
}
END_TEST

/* codec_deliver_split reads back what codec_deliver_prefix wrote, and
 * says no to anything else. */
START_TEST(test_codec_deliver_split_reverses_the_prefix)
{
    struct codec_deliver d = {.topic = "t.x", .topic_len = 3, .payload = "pp", .payload_len = 2};
    uint8_t body[64];
    size_t blen = codec_deliver_body_put(&d, body, NULL);
    uint64_t in[3] = {7, 300, 1ull << 50}, out[3];
    uint8_t frame[256];
    size_t pl = codec_deliver_prefix(frame, in, 3, blen);
    memcpy(frame + pl, body, blen);
    size_t n = 0, bl = 0;
    const uint8_t *b = NULL;
    ck_assert_int_eq(codec_deliver_split(frame, pl + blen, out, 3, &n, &b, &bl), 1);
    ck_assert_uint_eq(n, 3);
    ck_assert_mem_eq(out, in, sizeof(in));
    ck_assert_ptr_eq(b, frame + pl);
    ck_assert_uint_eq(bl, blen);
    /* more ids than room, a cut frame, another frame kind */
    ck_assert_int_eq(codec_deliver_split(frame, pl + blen, out, 2, &n, &b, &bl), 0);
    ck_assert_int_eq(codec_deliver_split(frame, pl + blen - 1, out, 3, &n, &b, &bl), 0);
    Ferry__Ping ping = FERRY__PING__INIT;
    ping.nonce = 5;
    Ferry__Frame f = FERRY__FRAME__INIT;
    f.body_case = FERRY__FRAME__BODY_PING;
    f.ping = &ping;
    size_t flen;
    ck_assert_int_eq(codec_frame_encode(&f, frame, sizeof(frame), &flen), 0);
    ck_assert_int_eq(codec_deliver_split(frame, flen, out, 3, &n, &b, &bl), 0);
}
END_TEST

START_TEST(test_codec_error_table_matches_wire_codes)
{
    /* Every wire ErrorCode but NONE has a FERRY_E* code -(1000 + N), and the
     * library's wire band holds nothing else. */
    static const int table[] = {
#define X(name, value, text) value,
        FERRY_ERRNO_MAP(X)
#undef X
    };
    const ProtobufCEnumDescriptor *ed = &ferry__error_code__descriptor;
    size_t wire_entries = 0;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (table[i] > -1100) {
            wire_entries++;
            int code = -table[i] - FERRY_EBASE;
            ck_assert_ptr_nonnull(protobuf_c_enum_descriptor_get_value(ed, code));
        }
    }
    ck_assert_uint_eq(wire_entries, ed->n_values - 1);
    ck_assert_int_eq(FERRY_ERR_FROM_WIRE(FERRY__ERROR_CODE__ERROR_STORAGE_FULL),
                     FERRY_ESTORAGEFULL);
}
END_TEST

START_TEST(test_codec_arena_keeps_small_chunk_between_frames)
{
    uint8_t body[] = {(10 << 3) | 2, 2, (1 << 3) | 0, 5};
    Ferry__Frame *f;
    ck_assert_int_eq(codec_frame_decode(&arena, body, sizeof(body), &f), 0);
    struct codec_chunk *first = arena.chunks;
    ck_assert_ptr_nonnull(first);
    ck_assert_int_eq(codec_frame_decode(&arena, body, sizeof(body), &f), 0);
    ck_assert_ptr_eq(arena.chunks, first);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("messages");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_codec_round_trip_every_message);
    tcase_add_test(tc, test_codec_unknown_fields_are_ignored);
    tcase_add_test(tc, test_codec_deliver_prefix_plus_shared_body_is_a_frame);
    tcase_add_test(tc, test_codec_deliver_body_matches_protobuf_c);
    tcase_add_test(tc, test_codec_deliver_body_large_payloads);
    tcase_add_test(tc, test_codec_deliver_split_reverses_the_prefix);
    tcase_add_test(tc, test_codec_encode_refuses_small_buffer);
    tcase_add_test(tc, test_codec_error_table_matches_wire_codes);
    tcase_add_test(tc, test_codec_arena_keeps_small_chunk_between_frames);
    tcase_add_test(tc, test_wire_varints_round_trip_and_refuse_overlong);
    suite_add_tcase(s, tc);
    TCase *bad = tcase_create("hostile");
    tcase_add_checked_fixture(bad, setup, teardown);
    tcase_add_test(bad, test_codec_rejects_nul_in_string);
    tcase_add_test(bad, test_codec_rejects_invalid_utf8);
    tcase_add_test(bad, test_codec_bad_strings_in_nested_messages_are_rejected);
    tcase_add_test(bad, test_codec_payload_may_hold_any_bytes);
    tcase_add_test(bad, test_codec_empty_oneof_is_rejected);
    tcase_add_test(bad, test_codec_truncated_body_is_rejected);
    tcase_add_test(bad, test_codec_budget_stops_allocation_amplification);
    tcase_add_test(bad, test_codec_budget_allows_ordinary_headers);
    tcase_add_test(bad, test_codec_field_number_zero_is_rejected);
    tcase_add_test(bad, test_codec_random_bytes_never_crash);
    suite_add_tcase(s, bad);
    return s;
}
