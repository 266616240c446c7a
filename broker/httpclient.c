/*
 * httpclient.c: see httpclient.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "httpclient.h"
#include "util.h"

struct buf {
	char *data;
	size_t len;
	int overflow;
};

static size_t
collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;
	size_t n = size * nmemb;
	char *nd;

	if (b->len + n > HTTPCLIENT_MAX_RESPONSE) {
		b->overflow = 1;
		return 0;
	}
	nd = realloc(b->data, b->len + n + 1);
	if (nd == NULL)
		return 0;
	b->data = nd;
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

int
httpclient_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

int
httpclient_request(const char *method, const char *url, const char *bearer,
    const char *content_type, const char *body, size_t len, int timeout,
    long *status, char **resp, size_t *resplen)
{
	struct curl_slist *hdrs = NULL;
	struct buf b = { NULL, 0, 0 };
	char auth[600], ct[128];
	CURL *c = NULL;
	int rc = -1;

	*status = 0;
	if (resp != NULL)
		*resp = NULL;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return -1;
	c = curl_easy_init();
	if (c == NULL)
		goto out;
	if (bearer != NULL) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
		hdrs = curl_slist_append(hdrs, auth);
	}
	if (content_type != NULL) {
		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		hdrs = curl_slist_append(hdrs, ct);
	}
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)timeout);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "countersign");
	/*
	 * libcurl ignores CURL_CA_BUNDLE (only the curl tool reads it), so a
	 * broker serving HTTPS with a private CA would be unreachable from
	 * the approver CLI. Honour it the way curl does: it replaces the
	 * system's trust store for this process.
	 */
	{
		const char *ca = getenv("CURL_CA_BUNDLE");

		if (ca != NULL && *ca != '\0')
			curl_easy_setopt(c, CURLOPT_CAINFO, ca);
	}
	if (body != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
	}
	if (curl_easy_perform(c) != CURLE_OK || b.overflow)
		goto out;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (resp != NULL) {
		*resp = b.data != NULL ? b.data : strdup("");
		b.data = NULL;
		if (resplen != NULL)
			*resplen = *resp != NULL ? strlen(*resp) : 0;
	}
	rc = 0;
out:
	free(b.data);
	curl_slist_free_all(hdrs);
	if (c != NULL)
		curl_easy_cleanup(c);
	util_secure_zero(auth, sizeof(auth));
	return rc;
}
