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
#include <stdint.h>

#include "b64.h"

/*
 * The characters for values 62 and 63; everything else is shared. Index 0
 * is standard base64, index 1 base64url.
 */
static const unsigned char b64_c62[2] = { '+', '-' };
static const unsigned char b64_c63[2] = { '/', '_' };

/*
 * All-ones if lo <= c <= hi, else zero, without a branch or a table
 * lookup. b64.c also decodes secrets (the master key file, HTTP Basic
 * client credentials), so the time taken must not depend on which
 * characters they contain. Arguments are at most 255, so c - lo and hi - c
 * set bit 31 exactly when they wrap.
 */
static uint32_t
b64_ct_range(uint32_t c, uint32_t lo, uint32_t hi)
{
	return 0U - ((((c - lo) | (hi - c)) >> 31) ^ 1);
}

/* The character for a 6-bit value, in constant time. */
static char
b64_char(uint32_t v, int url)
{
	uint32_t c;

	c = (b64_ct_range(v, 0, 25) & (v + 'A')) |
	    (b64_ct_range(v, 26, 51) & (v - 26 + 'a')) |
	    (b64_ct_range(v, 52, 61) & (v - 52 + '0')) |
	    (b64_ct_range(v, 62, 62) & b64_c62[url]) |
	    (b64_ct_range(v, 63, 63) & b64_c63[url]);
	return (char)c;
}

/*
 * The 6-bit value of a character, or -1 if it is not in the alphabet
 * selected by url, in constant time: each range contributes its value
 * plus one under a mask, and nothing matched leaves zero.
 */
static int
b64_value(unsigned char ch, int url)
{
	uint32_t c = ch, v;

	v = (b64_ct_range(c, 'A', 'Z') & (c - 'A' + 1)) |
	    (b64_ct_range(c, 'a', 'z') & (c - 'a' + 27)) |
	    (b64_ct_range(c, '0', '9') & (c - '0' + 53)) |
	    (b64_ct_range(c, b64_c62[url], b64_c62[url]) & 63) |
	    (b64_ct_range(c, b64_c63[url], b64_c63[url]) & 64);
	return (int)v - 1;
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
 * Encode n bytes with the alphabet selected by url, appending '=' padding
 * when pad is set. Returns the number of characters written before the NUL.
 */
static size_t
b64_encode(const unsigned char *in, size_t n, char *out, int url, int pad)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 3 <= n; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = b64_char(v >> 18 & 0x3f, url);
		out[o++] = b64_char(v >> 12 & 0x3f, url);
		out[o++] = b64_char(v >> 6 & 0x3f, url);
		out[o++] = b64_char(v & 0x3f, url);
	}
	if (n - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = b64_char(v >> 18 & 0x3f, url);
		out[o++] = b64_char(v >> 12 & 0x3f, url);
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (n - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_char(v >> 18 & 0x3f, url);
		out[o++] = b64_char(v >> 12 & 0x3f, url);
		out[o++] = b64_char(v >> 6 & 0x3f, url);
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

size_t
b64_url_encode(const unsigned char *in, size_t n, char *out)
{
	return b64_encode(in, n, out, 1, 0);
}

size_t
b64_std_encode(const unsigned char *in, size_t n, char *out)
{
	return b64_encode(in, n, out, 0, 1);
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
	uint32_t v;
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
		v = (uint32_t)c0 << 18 | (uint32_t)c1 << 12 |
		    (uint32_t)c2 << 6 | (uint32_t)c3;
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
		v = (uint32_t)c0 << 18 | (uint32_t)c1 << 12 |
		    (uint32_t)c2 << 6;
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
