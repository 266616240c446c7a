/*
 * test_keys.c: the master key file rules and client-secret hashing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "db.h"
#include "keys.h"

static char dir[] = "/tmp/cs-test-keys.XXXXXX";

/* Write text to dir/name with mode; return the path (static buffer). */
static const char *
write_file(const char *name, const char *text, mode_t mode)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f == NULL)
		return NULL;
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
	return path;
}

static int
init_with(const char *path, char *err, size_t errlen)
{
	struct broker_config cfg;

	config_defaults(&cfg);
	snprintf(cfg.master_key_file, sizeof(cfg.master_key_file), "%s",
	    path != NULL ? path : "");
	keys_shutdown();
	return keys_init(&cfg, err, errlen);
}

int
main(int argc, char **argv)
{
	/* 32 bytes of 0x01..0x20, base64. */
	const char *good = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n";
	unsigned char h1[KEYS_HASH_LEN], h2[KEYS_HASH_LEN], h3[KEYS_HASH_LEN];
	char err[512], *stored;

	(void)argc;
	if (mkdtemp(dir) == NULL)
		return 1;

	CHECK(init_with(NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, "COUNTERSIGN_MASTER_KEY_FILE") != NULL);
	CHECK(init_with("/nonexistent/master.key", err, sizeof(err)) == -1);
	CHECK(init_with(write_file("loose.key", good, 0644), err, sizeof(err)) == -1);
	CHECK(strstr(err, "chmod 600") != NULL);
	CHECK(init_with(write_file("group.key", good, 0640), err, sizeof(err)) == -1);
	CHECK(init_with(write_file("short.key", "AQIDBAUGBwgJCgsMDQ4PEA==\n", 0600),
	    err, sizeof(err)) == -1);
	CHECK(init_with(write_file("junk.key", "not base64 at all!\n", 0600),
	    err, sizeof(err)) == -1);
	CHECK(init_with(write_file("empty.key", "", 0600), err, sizeof(err)) == -1);
	/* Hashing refuses to work without a loaded key. */
	CHECK(keys_secret_hash("s", 1, h1) == -1);

	CHECK(init_with(write_file("good.key", good, 0600), err, sizeof(err)) == 0);
	CHECK(keys_secret_hash("secret-one", 10, h1) == 0);
	CHECK(keys_secret_hash("secret-one", 10, h2) == 0);
	CHECK(memcmp(h1, h2, KEYS_HASH_LEN) == 0);
	CHECK(keys_secret_hash("secret-two", 10, h3) == 0);
	CHECK(memcmp(h1, h3, KEYS_HASH_LEN) != 0);
	/* The hash is keyed: not the plain SHA-256 of the secret. */
	CHECK(memcmp(h1, "secret-one", 10) != 0);

	stored = db_bytea_param(h1, sizeof(h1));
	CHECK(stored != NULL);
	CHECK(keys_secret_matches("secret-one", stored) == 1);
	CHECK(keys_secret_matches("secret-onf", stored) == 0);
	CHECK(keys_secret_matches("", stored) == 0);
	CHECK(keys_secret_matches("secret-one", NULL) == 0);
	CHECK(keys_secret_matches("secret-one", "\\x00") == 0);
	CHECK(keys_secret_matches("secret-one", "garbage") == 0);
	free(stored);

	/* Another master key gives other hashes: the pepper comes from it. */
	CHECK(init_with(write_file("other.key",
	    "IB8eHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=\n", 0600), err,
	    sizeof(err)) == 0);
	CHECK(keys_secret_hash("secret-one", 10, h2) == 0);
	CHECK(memcmp(h1, h2, KEYS_HASH_LEN) != 0);
	keys_shutdown();

	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	return check_summary(argv[0]);
}
