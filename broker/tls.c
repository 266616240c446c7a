/*
 * tls.c: see tls.h.
 *
 * A credential is a certificate chain (as GnuTLS "pcerts") plus a private
 * key. The handshake callback hands GnuTLS pointers into the current
 * credential, and GnuTLS goes on using them after the callback returns, for
 * the rest of that handshake. So a reload cannot free the credential it
 * replaces at once: it keeps it as "previous" and frees only the one before,
 * which no handshake can still be using unless it has been running across
 * two reloads (handshakes are cut off by connection_timeout long before an
 * operator sends two SIGHUPs).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "tls.h"
#include "util.h"

#define TLS_MAX_CHAIN		16
#define TLS_MAX_CERT_FILE	(1024 * 1024)
#define TLS_MAX_KEY_FILE	(64 * 1024)

struct tls_cred {
	gnutls_pcert_st pcerts[TLS_MAX_CHAIN];
	unsigned int npcerts;
	gnutls_privkey_t key;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_cred *current;	/* under lock */
static struct tls_cred *previous;	/* under lock; see the top comment */
static char cert_path[1024];
static char key_path[1024];

static void
cred_free(struct tls_cred *c)
{
	unsigned int i;

	if (c == NULL)
		return;
	for (i = 0; i < c->npcerts; i++)
		gnutls_pcert_deinit(&c->pcerts[i]);
	/* GnuTLS clears the key's memory when it frees it. */
	if (c->key != NULL)
		gnutls_privkey_deinit(c->key);
	free(c);
}

/*
 * key_matches(c): 1 if the private key belongs to the leaf certificate, so
 * that a reload with a mismatched pair keeps the working one instead of
 * failing every handshake afterwards.
 */
static int
key_matches(const struct tls_cred *c)
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t a = { NULL, 0 }, b = { NULL, 0 };
	int ok = 0;

	if (gnutls_pubkey_init(&pub) < 0 ||
	    gnutls_pubkey_import_privkey(pub, c->key, 0, 0) < 0 ||
	    gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &a) < 0 ||
	    gnutls_pubkey_export2(c->pcerts[0].pubkey, GNUTLS_X509_FMT_DER,
	    &b) < 0)
		goto out;
	ok = a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
out:
	gnutls_free(a.data);
	gnutls_free(b.data);
	if (pub != NULL)
		gnutls_pubkey_deinit(pub);
	return ok;
}

/*
 * describe(c, serial, slen, not_after): the leaf's serial number in hex and
 * its expiry, for the log line that says which certificate is now served.
 */
static void
describe(const struct tls_cred *c, char *serial, size_t slen, time_t *not_after)
{
	gnutls_x509_crt_t crt = NULL;
	unsigned char raw[64];
	size_t rawlen = sizeof(raw), i;

	serial[0] = '\0';
	*not_after = 0;
	if (gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &c->pcerts[0].cert,
	    GNUTLS_X509_FMT_DER) < 0)
		goto out;
	if (gnutls_x509_crt_get_serial(crt, raw, &rawlen) == 0)
		for (i = 0; i < rawlen && 2 * i + 2 < slen; i++)
			snprintf(serial + 2 * i, 3, "%02x", raw[i]);
	*not_after = gnutls_x509_crt_get_expiration_time(crt);
out:
	gnutls_x509_crt_deinit(crt);
}

/*
 * cred_load(out, errbuf, errlen): read cert_path and key_path into a new
 * credential. The key file's text is wiped before it is freed, whatever
 * happens. Returns 0 and sets *out (owned by the caller), or -1.
 */
static int
cred_load(struct tls_cred **out, char *errbuf, size_t errlen)
{
	struct tls_cred *c = NULL;
	char *cert_text = NULL, *key_text = NULL;
	size_t cert_len = 0, key_len = 0;
	gnutls_datum_t d;
	int rc = -1, grc;

	*out = NULL;
	if (util_read_file(cert_path, TLS_MAX_CERT_FILE, &cert_text,
	    &cert_len) != 0) {
		snprintf(errbuf, errlen, "tls_cert_file %.200s: %s", cert_path,
		    strerror(errno));
		goto out;
	}
	if (util_read_file(key_path, TLS_MAX_KEY_FILE, &key_text,
	    &key_len) != 0) {
		snprintf(errbuf, errlen, "tls_key_file %.200s: %s", key_path,
		    strerror(errno));
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(errbuf, errlen, "out of memory");
		goto out;
	}
	d.data = (unsigned char *)cert_text;
	d.size = (unsigned int)cert_len;
	c->npcerts = TLS_MAX_CHAIN;
	grc = gnutls_pcert_list_import_x509_raw(c->pcerts, &c->npcerts, &d,
	    GNUTLS_X509_FMT_PEM, GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
	if (grc < 0 || c->npcerts == 0) {
		c->npcerts = 0;
		snprintf(errbuf, errlen, "tls_cert_file %.200s: %s", cert_path,
		    grc < 0 ? gnutls_strerror(grc) : "no certificate");
		goto out;
	}
	if ((grc = gnutls_privkey_init(&c->key)) < 0) {
		snprintf(errbuf, errlen, "tls_key_file: %s", gnutls_strerror(grc));
		goto out;
	}
	d.data = (unsigned char *)key_text;
	d.size = (unsigned int)key_len;
	grc = gnutls_privkey_import_x509_raw(c->key, &d, GNUTLS_X509_FMT_PEM,
	    NULL, 0);
	if (grc < 0) {
		/* gnutls_strerror names the problem, never the key's bytes. */
		snprintf(errbuf, errlen, "tls_key_file %.200s: %s (an unencrypted "
		    "PEM key is expected)", key_path, gnutls_strerror(grc));
		goto out;
	}
	if (!key_matches(c)) {
		snprintf(errbuf, errlen, "tls_key_file %.200s does not match the "
		    "first certificate of %.200s", key_path, cert_path);
		goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (key_text != NULL) {
		util_secure_zero(key_text, key_len);
		free(key_text);
	}
	free(cert_text);
	cred_free(c);
	return rc;
}

static void
log_loaded(const char *what, const struct tls_cred *c)
{
	char serial[80], exp[32] = "";
	time_t not_after;
	struct tm tm;

	describe(c, serial, sizeof(serial), &not_after);
	if (not_after > 0 && gmtime_r(&not_after, &tm) != NULL)
		strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	log_fields(LOG_LEVEL_INFO, what, json_pack("{s:s, s:s, s:s, s:i}",
	    "event", "tls.certificate_loaded", "serial", serial,
	    "not_after", exp, "chain_length", (int)c->npcerts));
	if (not_after > 0 && not_after < time(NULL))
		log_fields(LOG_LEVEL_WARN, "the TLS certificate has expired",
		    json_pack("{s:s, s:s}", "serial", serial, "not_after", exp));
}

/*
 * retrieve_cert: the gnutls_certificate_retrieve_function2 libmicrohttpd
 * calls at each handshake. One certificate per listener, so the client's
 * SNI and acceptable CAs are not consulted.
 */
static int
retrieve_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_dn,
    int nreqs, const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
    gnutls_pcert_st **pcert, unsigned int *pcert_length,
    gnutls_privkey_t *pkey)
{
	int rc = -1;

	(void)session;
	(void)req_ca_dn;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	pthread_mutex_lock(&lock);
	if (current != NULL) {
		*pcert = current->pcerts;
		*pcert_length = current->npcerts;
		*pkey = current->key;
		rc = 0;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

int
tls_enabled(const struct broker_config *cfg)
{
	return cfg->tls_cert_file[0] != '\0';
}

int
tls_init(const struct broker_config *cfg, char *errbuf, size_t errlen)
{
	struct tls_cred *c = NULL;

	snprintf(cert_path, sizeof(cert_path), "%s", cfg->tls_cert_file);
	snprintf(key_path, sizeof(key_path), "%s", cfg->tls_key_file);
	if (cred_load(&c, errbuf, errlen) != 0)
		return -1;
	pthread_mutex_lock(&lock);
	current = c;
	pthread_mutex_unlock(&lock);
	log_loaded("TLS certificate loaded", c);
	return 0;
}

int
tls_reload(char *errbuf, size_t errlen)
{
	struct tls_cred *c = NULL, *stale;

	if (cred_load(&c, errbuf, errlen) != 0)
		return -1;
	pthread_mutex_lock(&lock);
	stale = previous;
	previous = current;
	current = c;
	pthread_mutex_unlock(&lock);
	cred_free(stale);
	log_loaded("TLS certificate reloaded", c);
	return 0;
}

void (*tls_cert_callback(void))(void)
{
	/*
	 * A conversion between function pointer types is well defined; the
	 * receiver (libmicrohttpd) calls it with its real type.
	 */
	return (void (*)(void))retrieve_cert;
}

void
tls_shutdown(void)
{
	pthread_mutex_lock(&lock);
	cred_free(previous);
	cred_free(current);
	previous = current = NULL;
	pthread_mutex_unlock(&lock);
}
