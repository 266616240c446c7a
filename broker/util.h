/*
 * util.h: small pure helpers with no better home: wiping secrets, strict
 * number, duration and time parsing, name validation and random ids.
 */
#ifndef UTIL_H
#define UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Longest duration the broker accepts anywhere: one year. */
#define UTIL_DURATION_MAX	(366LL * 24 * 3600)

/* util_secure_zero(p, n): overwrite n bytes at p; never optimised away. */

/* util_hex(b, n, out): lowercase hex of n bytes into out (2n + 1 bytes). */
void util_hex(const unsigned char *b, size_t n, char *out);
void util_secure_zero(void *p, size_t n);

/*
 * util_parse_int64(s, min, max, out): parse a decimal integer that fills all
 * of s (optional leading '-', no spaces, no '+', no leading zeros beyond a
 * single "0") and lies in [min, max]. Returns 0 and sets *out, or -1.
 */
int util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/*
 * util_parse_duration(s, out): parse "90", "90s", "5m", "1h30m", "2d" into
 * seconds. Units s, m, h, d; each unit at most once, in decreasing order; a
 * bare number means seconds. The result must be in [1, UTIL_DURATION_MAX].
 * Returns 0 and sets *out, or -1.
 */
int util_parse_duration(const char *s, int64_t *out);

/*
 * util_parse_rfc3339(s, out): parse an RFC 3339 date-time
 * ("2026-01-02T03:04:05Z", optional fraction, 'Z' or +hh:mm/-hh:mm offset;
 * 't'/'z' accepted) into seconds since the epoch (fraction dropped).
 * Returns 0 or -1.
 */
int util_parse_rfc3339(const char *s, int64_t *out);

/* util_format_rfc3339(t, buf, cap): "YYYY-MM-DDTHH:MM:SSZ"; 0 or -1. */
int util_format_rfc3339(int64_t t, char *buf, size_t cap);

/*
 * util_valid_name(s): 1 if s is a valid name for an agent, approver or
 * service: 1 to 64 characters from [A-Za-z0-9._-], starting alphanumeric.
 */
int util_valid_name(const char *s);

/*
 * util_valid_id(s, n): 1 if the n bytes at s are 1-64 base64url characters
 * (the alphabet of our random identifiers: jti, auth_req_id).
 */
int util_valid_id(const char *s, size_t n);

/*
 * util_valid_utf8(s, n): 1 if the n bytes at s are well-formed UTF-8 with
 * no NUL and no C0 control character except tab, CR and LF.
 */
int util_valid_utf8(const char *s, size_t n);

/*
 * util_random_token(nbytes, out, cap): nbytes from RAND_bytes, base64url
 * encoded into out (cap must be at least 4*nbytes/3+2). Returns 0 or -1.
 */
int util_random_token(size_t nbytes, char *out, size_t cap);

/*
 * util_token_id(out, cap): a 22-character token id (jti) made of the
 * base64url alphabet: 42 bits of the wall clock in milliseconds, then 90
 * random bits, in an alphabet whose ASCII order is its value order. Ids
 * minted later sort later, so the token and audit indexes on jti grow at
 * their right edge instead of touching a random page per token (fewer
 * pages dirtied, fewer full-page images in the WAL after a checkpoint).
 * cap must be at least UTIL_TOKEN_ID_LEN + 1. Returns 0 or -1.
 */
#define UTIL_TOKEN_ID_LEN 22
int util_token_id(char *out, size_t cap);

/*
 * util_split_list(text, items, max, n): split text in place at commas into
 * at most max items (pointers into text). Returns 0 and sets *n, or -1 if
 * an item is empty or there are more than max.
 */
int util_split_list(char *text, char **items, size_t max, size_t *n);

/* util_now(): wall-clock seconds since the epoch (token times). */
int64_t util_now(void);

/* util_monotonic_ms(): monotonic milliseconds (timeouts, durations). */
int64_t util_monotonic_ms(void);

/*
 * util_read_file(path, max, out, outlen): read a whole file of at most max
 * bytes into a new NUL-terminated buffer. Returns 0, or -1 with errno set
 * (EFBIG when larger than max).
 */
int util_read_file(const char *path, size_t max, char **out, size_t *outlen);

#endif
