/*
 * b64.c: strict base64 (RFC 4648 §4) and base64url (§5) codecs.
 *
 * The decoders accept exactly one spelling for every byte string: the one
 * the encoders produce. That is what makes a compact JWS unambiguous; a
 * lenient decoder would let an attacker change a token's text (and so its
 * hash, its cache key, its audit fingerprint) without touching its
 * signature.
 */
#include <stddef.h>

#include "b64.h"

static const char b64_url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char b64_std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * Map one character to its 6-bit value, or -1. A switch on ranges rather
 * than a 256-entry table keeps the two alphabets obviously distinct and
 * cannot be confused by a signed char index.
 */
static int
b64_value(unsigned char c, int url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (url) {
		if (c == '-')
			return 62;
		if (c == '_')
			return 63;
	} else {
		if (c == '+')
			return 62;
		if (c == '/')
			return 63;
	}
	return -1;
}

size_t
b64_url_encoded_len(size_t n)
{
	static const size_t tail[3] = { 0, 2, 3 };

	return n / 3 * 4 + tail[n % 3];
}

size_t
b64_std_encoded_len(size_t n)
{
	/* Written without n + 2 so that it cannot wrap for huge n. */
	return (n / 3 + (n % 3 != 0)) * 4;
}

size_t
b64_decoded_max(size_t n)
{
	/* Two leftover characters carry one byte, three carry two. */
	return n / 4 * 3 + (n % 4) * 3 / 4;
}

/*
 * Encode n bytes with alphabet a; append '=' padding when pad is set.
 * Returns the number of characters written before the NUL.
 */
static size_t
b64_encode(const unsigned char *in, size_t n, char *out, const char *a,
    int pad)
{
	size_t i, o = 0;
	unsigned long v;

	for (i = 0; i + 3 <= n; i += 3) {
		v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = a[v >> 18 & 0x3f];
		out[o++] = a[v >> 12 & 0x3f];
		out[o++] = a[v >> 6 & 0x3f];
		out[o++] = a[v & 0x3f];
	}
	if (n - i == 1) {
		v = (unsigned long)in[i] << 16;
		out[o++] = a[v >> 18 & 0x3f];
		out[o++] = a[v >> 12 & 0x3f];
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8;
		out[o++] = a[v >> 18 & 0x3f];
		out[o++] = a[v >> 12 & 0x3f];
		out[o++] = a[v >> 6 & 0x3f];
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

size_t
b64_url_encode(const unsigned char *in, size_t n, char *out)
{
	return b64_encode(in, n, out, b64_url_alphabet, 0);
}

size_t
b64_std_encode(const unsigned char *in, size_t n, char *out)
{
	return b64_encode(in, n, out, b64_std_alphabet, 1);
}

/*
 * Decode n unpadded characters (n % 4 != 1) from the alphabet selected by
 * url. The output size is known before any byte is written, so an outcap
 * that is too small is refused up front rather than half-way through.
 */
static int
b64_decode(const char *in, size_t n, unsigned char *out, size_t outcap,
    size_t *outlen, int url)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i, o = 0, need, rem;
	unsigned long v;
	int c0, c1, c2, c3;
	int rc = -1;

	rem = n % 4;
	if (rem == 1)
		goto out;
	need = n / 4 * 3 + (rem == 0 ? 0 : rem - 1);
	if (need > outcap)
		goto out;

	for (i = 0; i + 4 <= n; i += 4) {
		c0 = b64_value(s[i], url);
		c1 = b64_value(s[i + 1], url);
		c2 = b64_value(s[i + 2], url);
		c3 = b64_value(s[i + 3], url);
		if (c0 < 0 || c1 < 0 || c2 < 0 || c3 < 0)
			goto out;
		v = (unsigned long)c0 << 18 | (unsigned long)c1 << 12 |
		    (unsigned long)c2 << 6 | (unsigned long)c3;
		out[o++] = (unsigned char)(v >> 16);
		out[o++] = (unsigned char)(v >> 8);
		out[o++] = (unsigned char)v;
	}
	if (rem == 2) {
		c0 = b64_value(s[i], url);
		c1 = b64_value(s[i + 1], url);
		/*
		 * Twelve bits carry one byte; the low four bits of the second
		 * character must be zero or a second spelling would exist.
		 */
		if (c0 < 0 || c1 < 0 || (c1 & 0x0f) != 0)
			goto out;
		out[o++] = (unsigned char)(c0 << 2 | c1 >> 4);
	} else if (rem == 3) {
		c0 = b64_value(s[i], url);
		c1 = b64_value(s[i + 1], url);
		c2 = b64_value(s[i + 2], url);
		/* Eighteen bits carry two bytes; two bits must be zero. */
		if (c0 < 0 || c1 < 0 || c2 < 0 || (c2 & 0x03) != 0)
			goto out;
		v = (unsigned long)c0 << 18 | (unsigned long)c1 << 12 |
		    (unsigned long)c2 << 6;
		out[o++] = (unsigned char)(v >> 16);
		out[o++] = (unsigned char)(v >> 8);
	}
	if (outlen != NULL)
		*outlen = o;
	rc = 0;
out:
	return rc;
}

int
b64_url_decode(const char *in, size_t n, unsigned char *out, size_t outcap,
    size_t *outlen)
{
	return b64_decode(in, n, out, outcap, outlen, 1);
}

int
b64_std_decode(const char *in, size_t n, unsigned char *out, size_t outcap,
    size_t *outlen)
{
	size_t pad = 0;

	/*
	 * Canonical padding means every group is complete and only the last
	 * one may end in "=" or "==". Stripping at most two '=' and decoding
	 * the rest as unpadded text rejects '=' anywhere else, because '='
	 * is not in the alphabet, and leaves n % 4 in {2, 3} exactly when
	 * padding was present.
	 */
	if (n % 4 != 0)
		return -1;
	if (n > 0 && in[n - 1] == '=') {
		pad++;
		if (in[n - 2] == '=')
			pad++;
	}
	return b64_decode(in, n - pad, out, outcap, outlen, 0);
}
