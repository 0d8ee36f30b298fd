/*
 * tls_certs.c - the TLS tests' certificates (tls_certs.h), made with
 * OpenSSL's C API.
 */
#include "tls_certs.h"

#include <dirent.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pair {
    EVP_PKEY *key;
    X509 *cert;
};

static long next_serial = 1;

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return -1;
    }
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* A key and a certificate for cn, signed by issuer (NULL: self-signed CA);
 * san: a subjectAltName value ("IP:127.0.0.1,DNS:localhost") or NULL. */
static int make_pair(struct pair *out, const char *cn, const char *san, const struct pair *issuer)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    if (key == NULL || cert == NULL) {
        goto out_fail;
    }
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), next_serial++);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509 *icert = issuer ? issuer->cert : cert;
    X509_set_issuer_name(cert, X509_get_subject_name(icert));
    if (issuer == NULL) {
        if (add_ext(cert, icert, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
            add_ext(cert, icert, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
            add_ext(cert, icert, NID_subject_key_identifier, "hash") < 0) {
            goto out_fail;
        }
    } else {
        if (add_ext(cert, icert, NID_basic_constraints, "CA:FALSE") < 0 ||
            add_ext(cert, icert, NID_ext_key_usage, "serverAuth,clientAuth") < 0 ||
            add_ext(cert, icert, NID_authority_key_identifier, "keyid") < 0) {
            goto out_fail;
        }
    }
    if (san != NULL && add_ext(cert, icert, NID_subject_alt_name, san) < 0) {
        goto out_fail;
    }
    if (X509_sign(cert, issuer ? issuer->key : key, EVP_sha256()) <= 0) {
        goto out_fail;
    }
    out->key = key;
    out->cert = cert;
    return 0;

out_fail:
    ERR_print_errors_fp(stderr);
    X509_free(cert);
    EVP_PKEY_free(key);
    return -1;
}

static void pair_free(struct pair *p)
{
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
}

const char *tls_certs_path(const struct tls_certs *tc, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", tc->dir, name);
    return buf;
}

/* base.pem (and base.key unless is_ca). */
static int write_pair(const struct tls_certs *tc, const char *base, const struct pair *p, int is_ca)
{
    char file[64], path[256];
    snprintf(file, sizeof(file), "%s.pem", base);
    FILE *f = fopen(tls_certs_path(tc, file, path, sizeof(path)), "w");
    if (f == NULL || PEM_write_X509(f, p->cert) != 1 || fclose(f) != 0) {
        return -1;
    }
    if (is_ca) {
        return 0;
    }
    snprintf(file, sizeof(file), "%s.key", base);
    f = fopen(tls_certs_path(tc, file, path, sizeof(path)), "w");
    if (f == NULL || PEM_write_PrivateKey(f, p->key, NULL, NULL, 0, NULL, NULL) != 1 ||
        fclose(f) != 0) {
        return -1;
    }
    return 0;
}

int tls_certs_make(struct tls_certs *tc)
{
    snprintf(tc->dir, sizeof(tc->dir), "/tmp/ferry-tls-XXXXXX");
    if (mkdtemp(tc->dir) == NULL) {
        perror("mkdtemp");
        tc->dir[0] = '\0';
        return -1;
    }
    struct pair ca = {0}, ca2 = {0}, p = {0};
    int rc = -1;
    if (make_pair(&ca, "ferry test CA", NULL, NULL) < 0 || write_pair(tc, "ca", &ca, 1) < 0 ||
        make_pair(&ca2, "ferry other CA", NULL, NULL) < 0 || write_pair(tc, "ca2", &ca2, 1) < 0) {
        goto out;
    }
    static const struct {
        const char *base, *cn, *san;
        int by_ca2;
    } leaves[] = {
        {"server", "localhost", "IP:127.0.0.1,DNS:localhost", 0},
        {"server2", "localhost", "IP:127.0.0.1,DNS:localhost", 1},
        {"noname", "elsewhere.invalid", NULL, 0},
        {"alice", "alice", NULL, 0},
        {"carol", "someone", "email:carol@example.com", 0},
        {"mallory", "alice", NULL, 1},
    };
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
        if (make_pair(&p, leaves[i].cn, leaves[i].san, leaves[i].by_ca2 ? &ca2 : &ca) < 0) {
            goto out;
        }
        int wrc = write_pair(tc, leaves[i].base, &p, 0);
        pair_free(&p);
        if (wrc < 0) {
            perror(leaves[i].base);
            goto out;
        }
    }
    rc = 0;
out:
    pair_free(&ca);
    pair_free(&ca2);
    if (rc < 0) {
        fprintf(stderr, "tls_certs_make: failed\n");
    }
    return rc;
}

int tls_certs_copy(const struct tls_certs *tc, const char *src, const char *dst)
{
    char sp[256], dp[256], tmp[300];
    tls_certs_path(tc, src, sp, sizeof(sp));
    tls_certs_path(tc, dst, dp, sizeof(dp));
    snprintf(tmp, sizeof(tmp), "%s.tmp", dp);
    FILE *in = fopen(sp, "r");
    FILE *out = fopen(tmp, "w");
    int rc = in && out ? 0 : -1;
    char buf[4096];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            rc = -1;
        }
    }
    if (in) {
        fclose(in);
    }
    if (out && fclose(out) != 0) {
        rc = -1;
    }
    /* rename: a reader sees the old file or the new one, never half. */
    if (rc == 0 && rename(tmp, dp) != 0) {
        rc = -1;
    }
    return rc;
}

void tls_certs_remove(struct tls_certs *tc)
{
    if (tc->dir[0] == '\0') {
        return;
    }
    DIR *d = opendir(tc->dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", tc->dir, e->d_name);
            unlink(path);
        }
    }
    if (d) {
        closedir(d);
    }
    rmdir(tc->dir);
    tc->dir[0] = '\0';
}
