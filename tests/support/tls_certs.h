/*
 * tls_certs.h - throwaway certificates for the TLS tests, made at test time
 * with OpenSSL's C API (no `openssl` tool needed): P-256 keys, SHA-256
 * signatures, valid from an hour ago for a day.
 *
 * tls_certs_make() fills a fresh mkdtemp directory with PEM files:
 *   ca.pem               the test CA ("ferry test CA")
 *   ca2.pem              another CA, that signed nothing the broker uses
 *   server.pem/.key      signed by ca: CN localhost, SAN IP 127.0.0.1 and
 *                        DNS localhost
 *   server2.pem/.key     signed by ca2, the same names (the reloaded one)
 *   noname.pem/.key      signed by ca: CN elsewhere.invalid, no SAN
 *   alice.pem/.key       client, signed by ca: CN alice
 *   carol.pem/.key       client, signed by ca: CN someone, SAN email
 *                        carol@example.com
 *   mallory.pem/.key     client, signed by ca2: CN alice (an impostor)
 */
#ifndef FERRY_TEST_TLS_CERTS_H
#define FERRY_TEST_TLS_CERTS_H

#include <stddef.h>

struct tls_certs {
    char dir[128]; /* the directory; "" when not made */
};

/* Make the directory and every file above. 0, or -1 (a message on stderr). */
int tls_certs_make(struct tls_certs *tc);

/* path = dir/name, into buf (cap bytes); returns buf. */
const char *tls_certs_path(const struct tls_certs *tc, const char *name, char *buf, size_t cap);

/* Copy file src over dst (both names in the directory). 0 or -1. */
int tls_certs_copy(const struct tls_certs *tc, const char *src, const char *dst);

/* Remove the directory and its files. */
void tls_certs_remove(struct tls_certs *tc);

#endif
