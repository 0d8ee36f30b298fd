/*
 * fuzz_frame.c - libFuzzer target for the wire decoder (frame + codec).
 *
 * The input is a byte stream as a peer would send it. The first byte picks
 * how the stream is split into reads (1 byte at a time up to large chunks),
 * the rest is fed through a frame decoder; every complete frame is decoded
 * with the codec. A frame that decodes must re-encode to a frame that decodes
 * again to the same bytes: the decoder accepts nothing the encoder cannot
 * represent.
 */
#include "codec.h"
#include "ferry.h"
#include "frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reencode(const Ferry__Frame *f)
{
    uint8_t *wire = NULL;
    size_t n = 0;
    if (codec_frame_encode_alloc(f, &wire, &n) != 0) {
        abort();
    }
    struct codec_arena a;
    codec_arena_init(&a);
    Ferry__Frame *g = NULL;
    if (codec_frame_decode(&a, wire + FRAME_HDR_LEN, n - FRAME_HDR_LEN, &g) != 0) {
        abort(); /* we encoded something we refuse to decode */
    }
    uint8_t *again = NULL;
    size_t m = 0;
    if (codec_frame_encode_alloc(g, &again, &m) != 0 || m != n || memcmp(again, wire, n) != 0) {
        abort();
    }
    free(again);
    free(wire);
    codec_arena_deinit(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    size_t chunk = (size_t)1 << (data[0] & 15); /* 1 .. 32768 */
    uint32_t max_len = (data[0] & 0x10) ? 4096 : FRAME_MAX_LEN_DEFAULT;
    data++;
    size--;

    struct frame_dec d;
    frame_dec_init(&d, max_len);
    struct codec_arena a;
    codec_arena_init(&a);
    size_t off = 0;
    size_t peak = 0; /* most bytes buffered at once */
    int broken = 0;
    while (off < size && !broken) {
        size_t k = size - off < chunk ? size - off : chunk;
        if (frame_dec_feed(&d, data + off, k) != 0) {
            break;
        }
        off += k;
        if (frame_dec_pending(&d) > peak) {
            peak = frame_dec_pending(&d);
        }
        const uint8_t *body;
        size_t len;
        int rc;
        while ((rc = frame_dec_next(&d, &body, &len)) == 1) {
            if (len == 0 || len > max_len) {
                abort();
            }
            Ferry__Frame *f = NULL;
            int drc = codec_frame_decode(&a, body, len, &f);
            if (drc == 0) {
                if (f->body_case == FERRY__FRAME__BODY__NOT_SET) {
                    abort();
                }
                check_reencode(f);
            } else if (drc != FERRY_EPROTOCOL && drc != FERRY_EUNKNOWNMSG) {
                abort();
            }
            if (a.used > CODEC_BUDGET(len)) {
                abort();
            }
        }
        if (rc < 0) {
            broken = 1;
        }
        /* memory follows the bytes received, not the length header: the
         * buffer never exceeds twice the most bytes ever buffered at once */
        if (d.cap > 2 * peak + 2 * FRAME_DEC_MIN_CAP) {
            abort();
        }
    }
    frame_dec_deinit(&d);
    codec_arena_deinit(&a);
    return 0;
}
