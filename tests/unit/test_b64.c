/*
 * test_b64.c: unit tests for the strict base64 / base64url codecs.
 *
 * Besides the RFC 4648 vectors, most of this file checks refusals: the
 * decoders exist to give every byte string exactly one spelling, so each
 * way of writing a second spelling (padding, whitespace, the other
 * alphabet, stray trailing bits) must be refused.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"
#include "check.h"

/*
 * A fixed-seed xorshift generator: the round trips should be reproducible
 * from run to run, and rand() is banned in this tree anyway.
 */
static uint64_t prng_state = 0x9e3779b97f4a7c15ULL;

static unsigned char
prng_byte(void)
{
	prng_state ^= prng_state << 13;
	prng_state ^= prng_state >> 7;
	prng_state ^= prng_state << 17;
	return (unsigned char)(prng_state >> 24);
}

/* Decode the NUL-terminated s with the url decoder; 0 or -1. */
static int
url_dec(const char *s, unsigned char *out, size_t cap, size_t *outlen)
{
	return b64_url_decode(s, strlen(s), out, cap, outlen);
}

static int
std_dec(const char *s, unsigned char *out, size_t cap, size_t *outlen)
{
	return b64_std_decode(s, strlen(s), out, cap, outlen);
}

/* RFC 4648 §10, in both alphabets (identical for these inputs). */
static void
test_rfc4648_vectors(void)
{
	static const struct {
		const char *plain, *std, *url;
	} v[] = {
		{ "", "", "" },
		{ "f", "Zg==", "Zg" },
		{ "fo", "Zm8=", "Zm8" },
		{ "foo", "Zm9v", "Zm9v" },
		{ "foob", "Zm9vYg==", "Zm9vYg" },
		{ "fooba", "Zm9vYmE=", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy", "Zm9vYmFy" },
	};
	char enc[32];
	unsigned char dec[32];
	size_t i, n, dn;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		n = strlen(v[i].plain);
		CHECK(b64_std_encoded_len(n) == strlen(v[i].std));
		CHECK(b64_url_encoded_len(n) == strlen(v[i].url));
		CHECK(b64_std_encode((const unsigned char *)v[i].plain, n,
		    enc) == strlen(v[i].std));
		CHECK_STR(enc, v[i].std);
		CHECK(b64_url_encode((const unsigned char *)v[i].plain, n,
		    enc) == strlen(v[i].url));
		CHECK_STR(enc, v[i].url);

		dn = 99;
		CHECK(std_dec(v[i].std, dec, sizeof(dec), &dn) == 0);
		CHECK(dn == n && memcmp(dec, v[i].plain, n) == 0);
		dn = 99;
		CHECK(url_dec(v[i].url, dec, sizeof(dec), &dn) == 0);
		CHECK(dn == n && memcmp(dec, v[i].plain, n) == 0);

		/* Each alphabet's decoder refuses the other's padding rule. */
		if (n % 3 != 0) {
			CHECK(url_dec(v[i].std, dec, sizeof(dec), &dn) == -1);
			CHECK(std_dec(v[i].url, dec, sizeof(dec), &dn) == -1);
		}
	}
}

/* The two characters in which the alphabets differ (RFC 4648 §4, §5). */
static void
test_alphabets(void)
{
	static const unsigned char b1[] = { 0xfb, 0xff };
	static const unsigned char b2[] = { 0xfb, 0xef, 0xbe };
	static const unsigned char b3[] = { 0x00, 0x10, 0x83, 0x10, 0x51,
	    0x87, 0x20, 0x92, 0x8b, 0x30, 0xd3, 0x8f, 0x41, 0x14, 0x93, 0x51,
	    0x55, 0x97, 0x61, 0x96, 0x9b, 0x71, 0xd7, 0x9f, 0x82, 0x18, 0xa3,
	    0x92, 0x59, 0xa7, 0xa2, 0x9a, 0xab, 0xb2, 0xdb, 0xaf, 0xc3, 0x1c,
	    0xb3, 0xd3, 0x5d, 0xb7, 0xe3, 0x9e, 0xbb, 0xf3, 0xdf, 0xbf };
	char enc[80];
	unsigned char dec[64];
	size_t dn;

	b64_std_encode(b1, sizeof(b1), enc);
	CHECK_STR(enc, "+/8=");
	b64_url_encode(b1, sizeof(b1), enc);
	CHECK_STR(enc, "-_8");
	b64_std_encode(b2, sizeof(b2), enc);
	CHECK_STR(enc, "++++");
	b64_url_encode(b2, sizeof(b2), enc);
	CHECK_STR(enc, "----");

	/* b3 spells out the whole alphabet in order. */
	b64_std_encode(b3, sizeof(b3), enc);
	CHECK_STR(enc,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
	CHECK(std_dec(enc, dec, sizeof(dec), &dn) == 0);
	CHECK(dn == sizeof(b3) && memcmp(dec, b3, dn) == 0);
	b64_url_encode(b3, sizeof(b3), enc);
	CHECK_STR(enc,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
	CHECK(url_dec(enc, dec, sizeof(dec), &dn) == 0);
	CHECK(dn == sizeof(b3) && memcmp(dec, b3, dn) == 0);

	CHECK(url_dec("-_8", dec, sizeof(dec), &dn) == 0);
	CHECK(dn == 2 && dec[0] == 0xfb && dec[1] == 0xff);
	CHECK(std_dec("+/8=", dec, sizeof(dec), &dn) == 0);
	CHECK(dn == 2 && dec[0] == 0xfb && dec[1] == 0xff);
}

static void
test_lengths(void)
{
	size_t n;
	int ok = 1;

	for (n = 0; n < 1000; n++) {
		/* Encoded lengths against the definition in RFC 4648. */
		if (b64_std_encoded_len(n) != (n + 2) / 3 * 4)
			ok = 0;
		if (b64_url_encoded_len(n) != (n * 8 + 5) / 6)
			ok = 0;
		/* decoded_max must bound both encodings. */
		if (b64_decoded_max(b64_url_encoded_len(n)) < n ||
		    b64_decoded_max(b64_std_encoded_len(n)) < n)
			ok = 0;
	}
	CHECK(ok);
	CHECK(b64_decoded_max(0) == 0);
	CHECK(b64_decoded_max(1) == 0);
	CHECK(b64_decoded_max(2) == 1);
	CHECK(b64_decoded_max(3) == 2);
	CHECK(b64_decoded_max(4) == 3);
	CHECK(b64_decoded_max(86) == 64);
	/* Must not wrap for absurd sizes. */
	CHECK(b64_std_encoded_len(SIZE_MAX / 4 * 3 - 2) > 0);
}

static void
test_round_trips(void)
{
	unsigned char in[301], dec[301];
	char enc[410];
	size_t n, i, el, dn;
	int round;
	int ok_url = 1, ok_std = 1, ok_cap = 1;

	for (round = 0; round < 4; round++) {
		for (n = 0; n <= 300; n++) {
			for (i = 0; i < n; i++)
				in[i] = prng_byte();

			el = b64_url_encode(in, n, enc);
			if (el != b64_url_encoded_len(n) || enc[el] != '\0' ||
			    strlen(enc) != el)
				ok_url = 0;
			dn = 0;
			if (b64_url_decode(enc, el, dec, n, &dn) != 0 ||
			    dn != n || memcmp(dec, in, n) != 0)
				ok_url = 0;
			/* One byte too few of room must be refused. */
			if (n > 0 && b64_url_decode(enc, el, dec, n - 1,
			    &dn) != -1)
				ok_cap = 0;

			el = b64_std_encode(in, n, enc);
			if (el != b64_std_encoded_len(n) || enc[el] != '\0' ||
			    strlen(enc) != el)
				ok_std = 0;
			dn = 0;
			if (b64_std_decode(enc, el, dec, n, &dn) != 0 ||
			    dn != n || memcmp(dec, in, n) != 0)
				ok_std = 0;
			if (n > 0 && b64_std_decode(enc, el, dec, n - 1,
			    &dn) != -1)
				ok_cap = 0;
		}
	}
	CHECK(ok_url);
	CHECK(ok_std);
	CHECK(ok_cap);
}

/* The decoders must read only the n characters they are given. */
static void
test_unterminated(void)
{
	static const char buf[] = "Zm9vYmFy!!!!";
	static const char buf2[] = "Zm9vYmE!!!!";
	unsigned char dec[16];
	size_t dn;

	CHECK(b64_url_decode(buf, 4, dec, sizeof(dec), &dn) == 0);
	CHECK(dn == 3 && memcmp(dec, "foo", 3) == 0);
	/* "Zm9vYmF" is cut mid-group and its 'F' leaves two bits set. */
	CHECK(b64_url_decode(buf, 7, dec, sizeof(dec), &dn) == -1);
	CHECK(b64_url_decode(buf2, 7, dec, sizeof(dec), &dn) == 0);
	CHECK(dn == 5 && memcmp(dec, "fooba", 5) == 0);
	CHECK(b64_std_decode(buf, 8, dec, sizeof(dec), &dn) == 0);
	CHECK(dn == 6 && memcmp(dec, "foobar", 6) == 0);
	CHECK(b64_url_decode(buf, 0, dec, 0, &dn) == 0 && dn == 0);
	CHECK(b64_std_decode(buf, 0, dec, 0, &dn) == 0 && dn == 0);
}

static void
test_url_rejects(void)
{
	static const char *bad[] = {
		/* padding in any amount */
		"Zg==", "Zg=", "Zm8=", "Zm9vYg==", "=", "==", "====",
		/* whitespace anywhere */
		" Zm9v", "Zm9v ", "Zm 9v", "Zm9v\n", "Zm9v\r\n", "\tZm9v",
		"Zm9vYmFy\n",
		/* the standard alphabet */
		"+/8", "ab+c", "ab/c", "++++", "////",
		/* lengths that cannot occur: n % 4 == 1 */
		"A", "Zm9vY", "Zm9vYmFyZ",
		/* nonzero unused bits: "Zg" and "Zm8" are the only spellings */
		"Zh", "Zv", "Z_", "Zm9", "Zm-", "AB", "AAB", "AAAAAB",
		/* other junk */
		"Zm9v.", "Zm9v\"", "Zm9v%", "Zm9v\x80", "Zm9v\xff", "\xc3\xa9\x41\x41",
	};
	unsigned char dec[32];
	size_t i, dn;
	int ok = 1;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (url_dec(bad[i], dec, sizeof(dec), &dn) != -1) {
			fprintf(stderr, "accepted url \"%s\"\n", bad[i]);
			ok = 0;
		}
	}
	CHECK(ok);

	/* An embedded NUL is a character like any other non-alphabet one. */
	CHECK(b64_url_decode("Zm\0v", 4, dec, sizeof(dec), &dn) == -1);
	/* Too small an output buffer, including zero. */
	CHECK(url_dec("Zm9vYmFy", dec, 5, &dn) == -1);
	CHECK(url_dec("Zm9vYmFy", dec, 6, &dn) == 0 && dn == 6);
	CHECK(url_dec("Zg", dec, 0, &dn) == -1);
	CHECK(url_dec("Zm8", dec, 1, &dn) == -1);
	CHECK(url_dec("Zm8", dec, 2, &dn) == 0 && dn == 2);
}

static void
test_std_rejects(void)
{
	static const char *bad[] = {
		/* missing or partial padding */
		"Zg", "Zg=", "Zm8", "Zm9vYg", "Zm9vYg=",
		/* too much padding, or padding not at the end */
		"Zg===", "Z===", "====", "Zm8==", "Zg==Zg==", "Zm=v", "Z=8=",
		"=Zm8", "Zm9v====",
		/* whitespace */
		" Zm9v", "Zm9v ", "Zm9v\n", "Zg==\n", "Zm9v\r\nYmFy",
		/* the url alphabet */
		"-_8=", "ab-c", "ab_c",
		/* nonzero unused bits */
		"Zh==", "Zm9=", "AB==", "AAB=",
		/* other junk */
		"Zm9v.AAA", "Zm9v\x80\x80\x80\x80",
	};
	unsigned char dec[32];
	size_t i, dn;
	int ok = 1;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (std_dec(bad[i], dec, sizeof(dec), &dn) != -1) {
			fprintf(stderr, "accepted std \"%s\"\n", bad[i]);
			ok = 0;
		}
	}
	CHECK(ok);
	CHECK(b64_std_decode("Zm\0v", 4, dec, sizeof(dec), &dn) == -1);
	CHECK(std_dec("Zm9vYmFy", dec, 5, &dn) == -1);
	CHECK(std_dec("Zm9vYg==", dec, 3, &dn) == -1);
	CHECK(std_dec("Zm9vYg==", dec, 4, &dn) == 0 && dn == 4);
	CHECK(std_dec("Zg==", dec, 0, &dn) == -1);
}

/*
 * Every string of two and three bytes: the url decoder must accept exactly
 * the canonical encodings, which the encoder must then reproduce. This
 * covers each non-alphabet byte in each position and each trailing-bit
 * pattern.
 */
static void
test_exhaustive_short(void)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+";
	char s[4], enc[8];
	unsigned char dec[4];
	size_t dn, accepted = 0;
	unsigned a, b, c;
	int ok = 1;

	s[2] = s[3] = '\0';
	for (a = 0; a < 256; a++) {
		for (b = 0; b < 256; b++) {
			s[0] = (char)a;
			s[1] = (char)b;
			if (b64_url_decode(s, 2, dec, sizeof(dec), &dn) != 0)
				continue;
			accepted++;
			b64_url_encode(dec, dn, enc);
			if (dn != 1 || memcmp(enc, s, 2) != 0 || enc[2] != '\0')
				ok = 0;
		}
	}
	/* 64 first characters times 4 canonical second characters. */
	CHECK(accepted == 256);
	CHECK(ok);

	/* Three characters from the alphabet plus '=' and '+'. */
	accepted = 0;
	for (a = 0; a < sizeof(al) - 1; a++) {
		for (b = 0; b < sizeof(al) - 1; b++) {
			for (c = 0; c < sizeof(al) - 1; c++) {
				s[0] = al[a];
				s[1] = al[b];
				s[2] = al[c];
				if (b64_url_decode(s, 3, dec, sizeof(dec),
				    &dn) != 0)
					continue;
				accepted++;
				b64_url_encode(dec, dn, enc);
				if (dn != 2 || strcmp(enc, s) != 0)
					ok = 0;
			}
		}
	}
	CHECK(accepted == 64 * 64 * 16);
	CHECK(ok);
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_rfc4648_vectors();
	test_alphabets();
	test_lengths();
	test_round_trips();
	test_unterminated();
	test_url_rejects();
	test_std_rejects();
	test_exhaustive_short();
	return check_summary(argv[0]);
}
