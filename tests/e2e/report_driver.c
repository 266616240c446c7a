/*
 * report_driver.c: drive the use reporter (include/countersign/report.h)
 * against a live broker for tests/e2e/uses.test.mjs, which compiles it.
 *
 *   CS_REPORT_SECRET=... report_driver [-b MAX_BATCH] [-f FLUSH_MS] [-n]
 *       [-p PREFIX] URL SERVICE COUNT [JTI[=RESULT] ...]
 *
 * Queues COUNT uses, cycling through the JTIs given (RESULT is a
 * cs_verify_result_name, "ok" by default; with no JTI, PREFIX0, PREFIX1,
 * ...), flushes (unless -n), prints the reporter's counters, frees the
 * reporter, and prints one JSON object:
 * {"queued", "refused", "sent", "dropped", "failed", "enqueue_ms",
 *  "flush_ms", "free_ms"}. The secret comes from the environment so that
 * it does not show in the process list.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "countersign/report.h"

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return errno != 0 || *end != '\0' || end == s || *out < lo || *out > hi ?
	    -1 : 0;
}

static int
result_from_name(const char *name, enum cs_verify_result *out)
{
	int r;

	for (r = CS_VERIFY_OK; r <= CS_VERIFY_INTERNAL; r++)
		if (strcmp(name, cs_verify_result_name((enum cs_verify_result)r))
		    == 0) {
			*out = (enum cs_verify_result)r;
			return 0;
		}
	return -1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: CS_REPORT_SECRET=... report_driver [-b N] "
	    "[-f MS] [-n] [-p PREFIX] URL SERVICE COUNT [JTI[=RESULT] ...]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct cs_reporter *rep;
	const char *secret = getenv("CS_REPORT_SECRET"), *prefix = "drv";
	long batch = 100, flush = 1000, count, i, refused = 0;
	long long t0, enqueue_ms, flush_ms = 0, free_ms;
	uint64_t sent, dropped, failed;
	int c, noflush = 0, njti;
	char jti[80];

	while ((c = getopt(argc, argv, "b:f:np:")) != -1) {
		switch (c) {
		case 'b':
			if (parse_int(optarg, 0, 100000, &batch) != 0)
				usage();
			break;
		case 'f':
			if (parse_int(optarg, 0, 1000000, &flush) != 0)
				usage();
			break;
		case 'n':
			noflush = 1;
			break;
		case 'p':
			prefix = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 3 || secret == NULL ||
	    parse_int(argv[2], 0, 1000000, &count) != 0)
		usage();
	rep = cs_reporter_new(argv[0], argv[1], secret, (int)batch, (int)flush);
	if (rep == NULL) {
		fprintf(stderr, "report_driver: cs_reporter_new failed\n");
		return 1;
	}
	njti = argc - 3;
	t0 = now_ms();
	for (i = 0; i < count; i++) {
		enum cs_verify_result r = CS_VERIFY_OK;

		if (njti > 0) {
			const char *arg = argv[3 + i % njti], *eq = strchr(arg, '=');

			snprintf(jti, sizeof(jti), "%.*s", eq != NULL ?
			    (int)(eq - arg) : (int)strlen(arg), arg);
			if (eq != NULL && result_from_name(eq + 1, &r) != 0)
				r = (enum cs_verify_result)(CS_VERIFY_INTERNAL + 1);
		} else
			snprintf(jti, sizeof(jti), "%s%ld", prefix, i);
		if (cs_report_use(rep, jti, r) != 0)
			refused++;
	}
	enqueue_ms = now_ms() - t0;
	if (!noflush) {
		t0 = now_ms();
		cs_reporter_flush(rep);
		flush_ms = now_ms() - t0;
	}
	cs_reporter_stats(rep, &sent, &dropped, &failed);
	t0 = now_ms();
	cs_reporter_free(rep);
	free_ms = now_ms() - t0;
	printf("{\"queued\":%ld,\"refused\":%ld,\"sent\":%llu,\"dropped\":%llu,"
	    "\"failed\":%llu,\"enqueue_ms\":%lld,\"flush_ms\":%lld,"
	    "\"free_ms\":%lld}\n", count - refused, refused,
	    (unsigned long long)sent, (unsigned long long)dropped,
	    (unsigned long long)failed, enqueue_ms, flush_ms, free_ms);
	return 0;
}
