/*
 * tls.h: the HTTPS server certificate and its private key, and their
 * replacement on SIGHUP without closing the listener.
 *
 * tls.c is the only file that includes GnuTLS (the TLS library Debian's
 * libmicrohttpd is built with). libmicrohttpd asks for the certificate at
 * every handshake through a callback; tls.c answers with the credential
 * loaded last, so a reload changes what new handshakes see while open
 * connections carry on.
 */
#ifndef TLS_H
#define TLS_H

#include <stddef.h>

#include "config.h"

/* The protocol versions and ciphers offered: GnuTLS's defaults, TLS 1.2+. */
#define TLS_PRIORITIES	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* tls_enabled(cfg): 1 if cfg asks for HTTPS (tls_cert_file is set). */
int tls_enabled(const struct broker_config *cfg);

/*
 * tls_init(cfg, errbuf, errlen): load cfg->tls_cert_file (a PEM chain,
 * leaf first) and cfg->tls_key_file (an unencrypted PEM private key that
 * must match the leaf). The key file's bytes are wiped once parsed.
 * Remembers the two paths for tls_reload(). Returns 0, or -1 with a
 * message (never key material) in errbuf.
 */
int tls_init(const struct broker_config *cfg, char *errbuf, size_t errlen);

/*
 * tls_reload(errbuf, errlen): read both files again and, only if they load
 * and match, make them the credential of every later handshake. On any
 * error the previous credential stays in use. Returns 0 or -1 with a
 * message in errbuf. Called from the signal-handling thread.
 */
int tls_reload(char *errbuf, size_t errlen);

/*
 * tls_cert_callback(): the function to give libmicrohttpd as
 * MHD_OPTION_HTTPS_CERT_CALLBACK (a gnutls_certificate_retrieve_function2),
 * returned as a generic function pointer so that callers need not include
 * GnuTLS.
 */
void (*tls_cert_callback(void))(void);

/* tls_shutdown(): free every loaded credential; after http_stop(). */
void tls_shutdown(void);

#endif
