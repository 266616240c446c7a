/*
 * fuzz_b64.c: libFuzzer target for the strict base64 codecs.
 *
 * The property under test is the one b64.h promises: a decoder accepts
 * only what the matching encoder produces, so whenever a decode succeeds,
 * re-encoding gives back the input byte for byte. Buffers are allocated at
 * exactly the documented sizes so that ASan sees any overrun.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decode with one variant and check the round trip back to the text. */
static void
check_decode(const uint8_t *data, size_t size, int url)
{
	size_t cap = b64_decoded_max(size), dn = 0, el;
	unsigned char *dec = malloc(cap > 0 ? cap : 1);
	char *enc = NULL;
	int rc;

	if (dec == NULL)
		abort();
	rc = url ? b64_url_decode((const char *)data, size, dec, cap, &dn) :
	    b64_std_decode((const char *)data, size, dec, cap, &dn);
	if (rc != 0)
		goto out;
	if (dn > cap)
		abort();
	el = url ? b64_url_encoded_len(dn) : b64_std_encoded_len(dn);
	if (el != size)
		abort();
	if ((enc = malloc(el + 1)) == NULL)
		abort();
	if ((url ? b64_url_encode(dec, dn, enc) :
	    b64_std_encode(dec, dn, enc)) != el)
		abort();
	if (memcmp(enc, data, size) != 0 || enc[el] != '\0')
		abort();
	/* One byte less room than needed must be refused outright. */
	if (dn > 0 && (url ?
	    b64_url_decode((const char *)data, size, dec, dn - 1, &dn) :
	    b64_std_decode((const char *)data, size, dec, dn - 1, &dn)) != -1)
		abort();
out:
	free(enc);
	free(dec);
}

/* Encode the input as bytes and check that it decodes back. */
static void
check_encode(const uint8_t *data, size_t size, int url)
{
	size_t el = url ? b64_url_encoded_len(size) : b64_std_encoded_len(size);
	char *enc = malloc(el + 1);
	unsigned char *dec = malloc(size > 0 ? size : 1);
	size_t dn = 0;

	if (enc == NULL || dec == NULL)
		abort();
	if ((url ? b64_url_encode(data, size, enc) :
	    b64_std_encode(data, size, enc)) != el || strlen(enc) != el)
		abort();
	if ((url ? b64_url_decode(enc, el, dec, size, &dn) :
	    b64_std_decode(enc, el, dec, size, &dn)) != 0)
		abort();
	if (dn != size || memcmp(dec, data, size) != 0)
		abort();
	free(dec);
	free(enc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Longer inputs exercise nothing new and only slow the search. */
	if (size > 65536)
		return 0;
	check_decode(data, size, 1);
	check_decode(data, size, 0);
	check_encode(data, size, 1);
	check_encode(data, size, 0);
	return 0;
}
