/*
 * httpclient.h: outgoing HTTP requests (webhooks, and the CLI's calls to
 * the broker's approver API), on libcurl. Only http(s) URLs; redirects are
 * never followed, so a URL cannot be bounced to an internal address.
 */
#ifndef HTTPCLIENT_H
#define HTTPCLIENT_H

#include <stddef.h>

/* Largest response body kept; the rest is an error. */
#define HTTPCLIENT_MAX_RESPONSE	(1024 * 1024)

/* httpclient_global_init(): once per process, before any thread uses it. */
int httpclient_global_init(void);

/*
 * httpclient_request(method, url, bearer, content_type, body, len, timeout,
 * status, resp, resplen): perform one request. bearer (may be NULL) becomes
 * "Authorization: Bearer ..."; body may be NULL. On 0, *status is the HTTP
 * status and *resp a new NUL-terminated body (caller frees; may be NULL if
 * resp is NULL). Returns -1 on transport failure or timeout.
 */
int httpclient_request(const char *method, const char *url, const char *bearer,
    const char *content_type, const char *body, size_t len, int timeout,
    long *status, char **resp, size_t *resplen);

#endif
