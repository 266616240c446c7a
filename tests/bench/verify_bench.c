/*
 * verify_bench: verifications per second of the C verify library on one
 * core, for a realistic token, beside the raw ES256 verify rate of the same
 * OpenSSL through EVP (what `openssl speed ecdsap256` measures).
 *
 * usage: verify_bench SECONDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "countersign/verify.h"
#include "jose.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3.0, t0, el;
	struct jose_key key;
	struct cs_verifier *v;
	struct cs_claims c;
	json_t *jwks;
	char *jwks_text, *token, payload[512];
	long n = 0;
	time_t iat = time(NULL);

	if (jose_key_init(&key, EVP_EC_gen("P-256")) != 0)
		return 1;
	jwks = json_pack("{s:[o]}", "keys", jose_key_public_jwk(&key));
	jwks_text = json_dumps(jwks, JSON_COMPACT);
	snprintf(payload, sizeof(payload), "{\"iss\":\"https://broker.example\","
	    "\"sub\":\"bench\",\"client_id\":\"bench\",\"aud\":"
	    "\"https://bench.example\",\"scope\":\"bench:read\",\"iat\":%lld,"
	    "\"nbf\":%lld,\"exp\":%lld,\"jti\":\"kfQZRT-Ldj9Eo4cE06d7LQ\"}",
	    (long long)iat, (long long)iat, (long long)iat + 3600);
	token = jose_sign(&key, "at+jwt", payload, strlen(payload));
	v = cs_verifier_new("https://broker.example", "https://bench.example");
	if (token == NULL || v == NULL ||
	    cs_verifier_load_jwks(v, jwks_text, strlen(jwks_text)) != 1)
		return 1;
	t0 = now();
	do {
		int i;

		for (i = 0; i < 200; i++) {
			if (cs_verify(v, token, &c) != CS_VERIFY_OK)
				return 1;
			cs_claims_clear(&c);
		}
		n += 200;
		el = now() - t0;
	} while (el < seconds);
	printf("{\"verifies_per_s\": %.0f, \"seconds\": %.2f}\n", n / el, el);
	cs_verifier_free(v);
	free(token);
	free(jwks_text);
	json_decref(jwks);
	jose_key_clear(&key);
	return 0;
}
