/*
 * json_check.h - a strict JSON checker for tests that read machine output
 * (ferryd --inspect --json): RFC 8259's grammar, strings of well-formed
 * UTF-8 with valid escapes (surrogates paired), one document, nothing
 * after it but whitespace. Pure; builds no tree.
 */
#ifndef FERRY_TEST_JSON_CHECK_H
#define FERRY_TEST_JSON_CHECK_H

#include <stddef.h>

/* 0 when s[0..n) is one valid JSON document; else -1, with the offset of
 * the first byte that breaks it in *err_at (may be NULL). */
int json_check(const char *s, size_t n, size_t *err_at);

#endif
