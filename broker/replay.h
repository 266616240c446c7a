/*
 * replay.h: memory of one-time identifiers (the jti of client assertions
 * and DPoP proofs), shared by every broker process through PostgreSQL.
 */
#ifndef REPLAY_H
#define REPLAY_H

#include <stdint.h>

#include "countersign.h"

/* Longest jti accepted (the column allows this much). */
#define REPLAY_JTI_MAX		256

/*
 * replay_remember(realm, jti, expires_at): record that jti was used in
 * realm ("client:NAME", "dpop:JKT") and must not be accepted again before
 * expires_at (seconds since the epoch). CS_OK the first time; CS_ERR_CONFLICT
 * if it is already remembered and not yet expired (a replay); CS_ERR_
 * UNAVAILABLE if the database cannot say, which callers must treat as a
 * refusal (fail closed). A remembered identifier whose time has passed may
 * be reused, because the artefact that carried it is refused as expired
 * anyway. Every few calls, expired rows are pruned.
 */
enum cs_err replay_remember(const char *realm, const char *jti,
    int64_t expires_at);

#endif
