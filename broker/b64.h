/*
 * b64.h: strict base64 (RFC 4648 §4) and base64url (§5) codecs.
 *
 * Decoders are strict because a JWS must have exactly one encoding: no
 * padding and no whitespace in base64url, canonical padding in base64, and
 * the unused trailing bits of the last character must be zero. Anything
 * else is rejected rather than "fixed", so two different strings can never
 * decode to the same bytes.
 */
#ifndef B64_H
#define B64_H

#include <stddef.h>

/* Length of the unpadded base64url encoding of n bytes (without NUL). */
size_t b64_url_encoded_len(size_t n);

/* Length of the padded base64 encoding of n bytes (without NUL). */
size_t b64_std_encoded_len(size_t n);

/* Upper bound of the bytes that n encoded characters can decode to. */
size_t b64_decoded_max(size_t n);

/*
 * b64_url_encode(in, n, out): write the unpadded base64url encoding of the n
 * bytes at in to out, followed by a NUL. out must hold
 * b64_url_encoded_len(n) + 1 bytes. Returns the encoded length.
 */
size_t b64_url_encode(const unsigned char *in, size_t n, char *out);

/* As b64_url_encode, but padded standard base64. */
size_t b64_std_encode(const unsigned char *in, size_t n, char *out);

/*
 * b64_url_decode(in, n, out, outcap, outlen): decode the n characters at in
 * (which need not be NUL-terminated) into out, which has room for outcap
 * bytes. Only A-Z a-z 0-9 - _ are allowed, no padding, n % 4 != 1, and the
 * unused low bits of the last character must be zero. Returns 0 and sets
 * *outlen, or -1 on any deviation or when the result would exceed outcap
 * (out may then hold garbage).
 */
int b64_url_decode(const char *in, size_t n, unsigned char *out,
    size_t outcap, size_t *outlen);

/*
 * b64_std_decode: as b64_url_decode for standard base64 (A-Z a-z 0-9 + /)
 * with mandatory canonical '=' padding (n % 4 == 0).
 */
int b64_std_decode(const char *in, size_t n, unsigned char *out,
    size_t outcap, size_t *outlen);

#endif
