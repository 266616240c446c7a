/*
 * util.c: see util.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "b64.h"
#include "util.h"

void
util_secure_zero(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

void
util_hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int
util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	const char *p = s;
	int neg = 0;
	uint64_t v = 0;
	uint64_t limit;

	if (s == NULL || *s == '\0')
		return -1;
	if (*p == '-') {
		neg = 1;
		p++;
	}
	if (*p == '\0' || (p[0] == '0' && p[1] != '\0'))
		return -1;
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v > (limit - (uint64_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (neg) {
		/* -0 is not a number anyone means to type. */
		if (v == 0)
			return -1;
		if (v == (uint64_t)INT64_MAX + 1) {
			if (min > INT64_MIN)
				return -1;
			*out = INT64_MIN;
			return 0;
		}
		if (-(int64_t)v < min)
			return -1;
		*out = -(int64_t)v;
		return 0;
	}
	if ((int64_t)v > max || (int64_t)v < min)
		return -1;
	*out = (int64_t)v;
	return 0;
}

int
util_parse_duration(const char *s, int64_t *out)
{
	static const struct { char unit; int64_t secs; } units[] = {
		{ 'd', 86400 }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 }
	};
	const char *p = s;
	size_t next_unit = 0;
	int64_t total = 0;

	if (s == NULL || *s == '\0' || strlen(s) > 32)
		return -1;
	while (*p != '\0') {
		int64_t v = 0;
		size_t digits = 0, i;

		while (*p >= '0' && *p <= '9') {
			if (digits++ >= 9)
				return -1;
			v = v * 10 + (*p - '0');
			p++;
		}
		if (digits == 0)
			return -1;
		if (*p == '\0') {
			/* A bare number means seconds, but only on its own. */
			if (p - s != (long)digits)
				return -1;
			total = v;
			break;
		}
		for (i = next_unit; i < 4; i++)
			if (units[i].unit == *p)
				break;
		if (i == 4)
			return -1;
		total += v * units[i].secs;
		if (total > UTIL_DURATION_MAX)
			return -1;
		next_unit = i + 1;
		p++;
	}
	if (total < 1 || total > UTIL_DURATION_MAX)
		return -1;
	*out = total;
	return 0;
}

static int
digits_n(const char *p, int n, int *out)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return 0;
}

/* 9999-12-31T23:59:59Z, the last instant with a four-digit year. */
#define RFC3339_MAX	253402300799LL

int
util_parse_rfc3339(const char *s, int64_t *out)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	struct tm tm;
	int year, mon, day, hour, min, sec, oh, om;
	const char *p;
	int64_t t;
	time_t tt;

	if (s == NULL || strlen(s) < 20 || strlen(s) > 40)
		return -1;
	if (digits_n(s, 4, &year) || s[4] != '-' || digits_n(s + 5, 2, &mon) ||
	    s[7] != '-' || digits_n(s + 8, 2, &day) ||
	    (s[10] != 'T' && s[10] != 't') || digits_n(s + 11, 2, &hour) ||
	    s[13] != ':' || digits_n(s + 14, 2, &min) || s[16] != ':' ||
	    digits_n(s + 17, 2, &sec))
		return -1;
	if (year < 1970 || mon < 1 || mon > 12 || day < 1 ||
	    day > mdays[mon - 1] || hour > 23 || min > 59 || sec > 60)
		return -1;
	if (mon == 2 && day == 29 &&
	    !((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
		return -1;
	p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec == 60 ? 59 : sec;
	tt = timegm(&tm);
	if (tt == (time_t)-1)
		return -1;
	t = (int64_t)tt;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		*out = t;
		return 0;
	}
	if ((*p != '+' && *p != '-') || strlen(p) != 6 ||
	    digits_n(p + 1, 2, &oh) || p[3] != ':' || digits_n(p + 4, 2, &om) ||
	    oh > 23 || om > 59)
		return -1;
	/* Local time = UTC + offset, so UTC = local - offset. */
	t += (*p == '+' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
	/*
	 * The offset can carry a 1970 local time before the epoch or a 9999
	 * one into year 10000; refuse both, so that every accepted time is
	 * one util_format_rfc3339 can write and this function read back.
	 */
	if (t < 0 || t > RFC3339_MAX)
		return -1;
	*out = t;
	return 0;
}

int
util_format_rfc3339(int64_t t, char *buf, size_t cap)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (gmtime_r(&tt, &tm) == NULL)
		return -1;
	if (strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return -1;
	return 0;
}

int
util_valid_name(const char *s)
{
	size_t i, n;

	if (s == NULL)
		return 0;
	n = strlen(s);
	if (n < 1 || n > 64)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9');

		if (i == 0 && !alnum)
			return 0;
		if (!alnum && c != '.' && c != '_' && c != '-')
			return 0;
	}
	return 1;
}

int
util_valid_id(const char *s, size_t n)
{
	size_t i;

	if (s == NULL || n == 0 || n > 64)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

int
util_valid_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		uint32_t cp;
		size_t len, k;

		if (c < 0x80) {
			if (c < 0x20 && c != '\t' && c != '\r' && c != '\n')
				return 0;
			if (c == 0x7f)
				return 0;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		/* Overlong forms, surrogates and values past U+10FFFF. */
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		i += len;
	}
	return 1;
}

int
util_random_token(size_t nbytes, char *out, size_t cap)
{
	unsigned char buf[64];
	int rc = -1;

	if (nbytes == 0 || nbytes > sizeof(buf) ||
	    cap < b64_url_encoded_len(nbytes) + 1)
		goto out;
	if (RAND_bytes(buf, (int)nbytes) != 1)
		goto out;
	b64_url_encode(buf, nbytes, out);
	rc = 0;
out:
	util_secure_zero(buf, sizeof(buf));
	return rc;
}

/*
 * Base64's 64 symbols in ASCII order: a string of them sorts, bytewise, in
 * the order of the bits it encodes, and it is still made only of the
 * base64url alphabet.
 */
static const char sortable64[] =
    "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

int
util_token_id(char *out, size_t cap)
{
	unsigned char r[12];	/* 96 bits; the last 6 are not used */
	struct timespec ts;
	uint64_t ms, bits = 0;
	int have = 0;
	size_t i, j = 0;

	if (cap < UTIL_TOKEN_ID_LEN + 1 || RAND_bytes(r, sizeof(r)) != 1)
		return -1;
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	/*
	 * 42 bits of milliseconds, good until the year 2109. Their first
	 * character is never '-' (that takes ms below 2^36, in 1972), so an id
	 * cannot be mistaken for a command-line option.
	 */
	for (i = 0; i < 7; i++)
		out[i] = sortable64[(ms >> (36 - 6 * i)) & 63];
	for (i = 7; i < UTIL_TOKEN_ID_LEN; i++) {
		if (have < 6) {
			bits = (bits << 8) | r[j++];
			have += 8;
		}
		have -= 6;
		out[i] = sortable64[(bits >> have) & 63];
	}
	out[UTIL_TOKEN_ID_LEN] = '\0';
	util_secure_zero(r, sizeof(r));
	return 0;
}

int
util_split_list(char *text, char **items, size_t max, size_t *n)
{
	char *p = text;

	*n = 0;
	while (*p != '\0') {
		char *comma = strchr(p, ',');

		if (comma != NULL)
			*comma = '\0';
		if (*p == '\0' || *n == max)
			return -1;
		items[(*n)++] = p;
		if (comma == NULL)
			break;
		p = comma + 1;
		if (*p == '\0')
			return -1;
	}
	return 0;
}

int64_t
util_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

int64_t
util_monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
util_read_file(const char *path, size_t max, char **out, size_t *outlen)
{
	struct stat st;
	char *buf = NULL;
	size_t have = 0;
	int fd = -1, rc = -1, saved;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out;
	if (fstat(fd, &st) != 0)
		goto out;
	if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		goto out;
	while (have < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + have, (size_t)st.st_size - have);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			goto out;
		have += (size_t)r;
	}
	buf[have] = '\0';
	*out = buf;
	*outlen = have;
	buf = NULL;
	rc = 0;
out:
	saved = errno;
	if (buf != NULL) {
		util_secure_zero(buf, (size_t)st.st_size + 1);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	errno = saved;
	return rc;
}
