/*
 * verify_driver.c: verify one token with the verify library
 * (include/countersign/verify.h), for tests/e2e/services.test.mjs, which
 * compiles it against the shared libcountersign-verify.so, so that the
 * library is exercised the way a service installs and links it.
 *
 *   verify_driver ISSUER AUDIENCE JWKS_FILE TOKEN
 *
 * Prints "ok JTI SUB SCOPE" and exits 0 for a valid token, or
 * "invalid REASON" (a cs_verify_result_name) and exits 1; exits 2 if the
 * keys cannot be loaded.
 */
#include <stdio.h>

#include "countersign/verify.h"

int
main(int argc, char **argv)
{
	struct cs_verifier *v;
	struct cs_claims c;
	enum cs_verify_result r;

	if (argc != 5) {
		fprintf(stderr, "usage: verify_driver ISSUER AUDIENCE JWKS_FILE "
		    "TOKEN\n");
		return 2;
	}
	v = cs_verifier_new(argv[1], argv[2]);
	if (v == NULL || cs_verifier_load_jwks_file(v, argv[3]) <= 0) {
		fprintf(stderr, "verify_driver: cannot load %s\n", argv[3]);
		cs_verifier_free(v);
		return 2;
	}
	r = cs_verify(v, argv[4], &c);
	if (r != CS_VERIFY_OK) {
		printf("invalid %s\n", cs_verify_result_name(r));
		cs_verifier_free(v);
		return 1;
	}
	printf("ok %s %s %s\n", c.jti, c.sub, c.scope);
	cs_claims_clear(&c);
	cs_verifier_free(v);
	return 0;
}
