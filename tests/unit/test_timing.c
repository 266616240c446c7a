/*
 * test_timing.c: a dudect-style check that comparing secrets takes the
 * same time wherever the first difference lies.
 *
 * Method (after Reparaz, Balasch and Verbauwhede, "Dude, is my code
 * constant time?", 2017): two classes of inputs, A (the candidate differs
 * from the reference in its first byte) and B (in its last byte), are
 * drawn in random order, so that drift and interference fall on both
 * alike; each sample times a batch of calls; each class is cropped at its
 * median, which drops interrupts and preemption on a shared machine (an
 * honest compare has the same distribution in both classes, so the same
 * lower half); Welch's t statistic compares the two classes.
 *
 * A control proves the harness can see a leak: an early-exit compare, as
 * memcmp is, over BUF_LEN bytes must show |t| > 100 on the same inputs (it
 * shows 1,600 to 60,000). Then the compares we use must stay under 10,
 * dudect's bound for "definitely not constant time": CRYPTO_memcmp on the
 * raw bytes, and keys_secret_matches (HMAC the candidate, compare with the
 * stored HMAC), which client secrets go through. Approver keys are found
 * by their HMAC in an index, so no byte of one is compared in our code.
 * On a busy shared machine an honest compare reaches |t| 5 to 9 now and
 * then, and more when preempted, so a compare passes if any of 5 runs
 * does; a real leak shows in every run. Sensitivity is limited by that
 * noise: an early exit over only 32 bytes shows |t| between 0.5 and 50
 * here, so a leak that small is not reliably caught.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "check.h"
#include "config.h"
#include "keys.h"

#define SAMPLES		40000	/* per run, both classes together */
#define BUF_LEN		512	/* bytes compared by the raw compares */
#define BATCH		8	/* calls per timed sample */
#define CROP		0.50	/* keep each class up to this percentile */
#define LEAK_T		100.0	/* the control must exceed this */
#define SAFE_T		10.0	/* ours must stay under this */
#define RUNS		5

typedef int (*compare_fn)(const void *ctx);

/*
 * One candidate buffer serves both classes, its one differing byte moved
 * before each sample (untimed): separate buffers per class would differ in
 * address and cache placement, which a t-test sees too.
 */
static unsigned char ref[BUF_LEN], cand[BUF_LEN];
static char secret[KEYS_SECRET_LEN + 1], secret_cand[KEYS_SECRET_LEN + 1];
static volatile int sink;

static void
set_class(int cls)
{
	memcpy(cand, ref, BUF_LEN);
	cand[cls == 0 ? 0 : BUF_LEN - 1] ^= 0x01;
	memcpy(secret_cand, secret, sizeof(secret));
	secret_cand[cls == 0 ? 0 : KEYS_SECRET_LEN - 1] ^= 0x01;
}

/* The control: stops at the first difference, as memcmp does. */
static __attribute__((noinline)) int
leaky_compare(const unsigned char *a, const unsigned char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (a[i] != b[i])
			return 1;
	return 0;
}

/* ctx: the number of bytes compared (the candidate's last one differs). */
static int
run_leaky(const void *ctx)
{
	size_t n = *(const size_t *)ctx;

	return leaky_compare(ref + BUF_LEN - n, cand + BUF_LEN - n, n);
}

static int
run_crypto_memcmp(const void *ctx)
{
	(void)ctx;
	return CRYPTO_memcmp(ref, cand, BUF_LEN);
}

/* ctx: the stored HMAC of secret. */
static int
run_secret_matches(const void *ctx)
{
	return keys_secret_matches(secret_cand, (const char *)ctx);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * One run: SAMPLES timed batches with classes in random order; returns
 * Welch's t over the samples up to the CROP percentile, or NAN.
 */
static double
welch_t(compare_fn f, const void *ctx)
{
	static uint64_t t[SAMPLES], sorted[SAMPLES];
	static unsigned char cls[SAMPLES];
	double sum[2] = { 0, 0 }, sq[2] = { 0, 0 }, n[2] = { 0, 0 };
	double mean[2], var[2];
	uint64_t limit[2];
	int i, j, c, acc = 0;

	if (RAND_bytes(cls, sizeof(cls)) != 1)
		return NAN;
	for (i = 0; i < SAMPLES; i++) {
		uint64_t t0;

		set_class(cls[i] & 1);
		/*
		 * One untimed call first, so that the byte just written is
		 * out of the store buffer and both classes start from the
		 * same cache state.
		 */
		acc += f(ctx);
		t0 = now_ns();
		for (j = 0; j < BATCH; j++)
			acc += f(ctx);
		t[i] = now_ns() - t0;
	}
	sink = acc;
	/* Each class is cropped at its own percentile. */
	for (c = 0; c < 2; c++) {
		size_t m = 0;

		for (i = 0; i < SAMPLES; i++)
			if ((cls[i] & 1) == c)
				sorted[m++] = t[i];
		if (m < 2)
			return NAN;
		qsort(sorted, m, sizeof(sorted[0]), cmp_u64);
		limit[c] = sorted[(size_t)((double)(m - 1) * CROP)];
	}
	for (i = 0; i < SAMPLES; i++) {
		c = cls[i] & 1;
		if (t[i] > limit[c])
			continue;
		sum[c] += (double)t[i];
		sq[c] += (double)t[i] * (double)t[i];
		n[c] += 1;
	}
	for (i = 0; i < 2; i++) {
		if (n[i] < 2)
			return NAN;
		mean[i] = sum[i] / n[i];
		var[i] = (sq[i] - n[i] * mean[i] * mean[i]) / (n[i] - 1);
	}
	if (var[0] + var[1] <= 0)
		return 0;	/* every sample the same: no difference seen */
	return (mean[0] - mean[1]) / sqrt(var[0] / n[0] + var[1] / n[1]);
}

/* The smallest |t| of up to RUNS runs, stopping at the first under SAFE_T. */
static double
best_of_runs(const char *name, compare_fn f, const void *ctx)
{
	double best = INFINITY;
	int r;

	for (r = 0; r < RUNS; r++) {
		double t = fabs(welch_t(f, ctx));

		printf("  %s: run %d |t| = %.2f\n", name, r + 1, t);
		if (t < best)
			best = t;
		if (best < SAFE_T)
			break;
	}
	return best;
}

int
main(int argc, char **argv)
{
	/* 32 bytes of 0x01..0x20, base64: a throwaway master key. */
	const char *key = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n";
	char dir[] = "/tmp/cs-test-timing.XXXXXX", path[64], err[256];
	char *stored = NULL;
	size_t long_len = BUF_LEN;
	struct broker_config cfg;
	double t;
	FILE *fp;

	(void)argc;
	CHECK(RAND_bytes(ref, sizeof(ref)) == 1);

	/* The harness sees a leak when there is one. */
	t = fabs(welch_t(run_leaky, &long_len));
	printf("  early-exit compare of %zu bytes (control): |t| = %.2f\n",
	    long_len, t);
	CHECK(t > LEAK_T);

	t = best_of_runs("CRYPTO_memcmp", run_crypto_memcmp, NULL);
	CHECK(t < SAFE_T);

	/* keys_secret_matches needs the HMAC key, from a master key file. */
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/master.key", dir);
	fp = fopen(path, "w");
	CHECK(fp != NULL);
	if (fp != NULL) {
		fputs(key, fp);
		fclose(fp);
	}
	config_defaults(&cfg);
	snprintf(cfg.master_key_file, sizeof(cfg.master_key_file), "%s", path);
	CHECK(chmod(path, 0600) == 0);
	CHECK(keys_init(&cfg, err, sizeof(err)) == 0);
	CHECK(keys_new_secret(secret, &stored) == 0);
	if (stored != NULL) {
		CHECK(keys_secret_matches(secret, stored) == 1);
		set_class(0);
		CHECK(keys_secret_matches(secret_cand, stored) == 0);
		set_class(1);
		CHECK(keys_secret_matches(secret_cand, stored) == 0);
		t = best_of_runs("keys_secret_matches", run_secret_matches, stored);
		CHECK(t < SAFE_T);
	}
	free(stored);
	OPENSSL_cleanse(secret, sizeof(secret));
	keys_shutdown();
	unlink(path);
	rmdir(dir);
	return check_summary(argv[0]);
}
