#!/usr/bin/env bash
# tools/banned.sh: fail if broker or library code calls a function we ban
# (unbounded string functions, non-reentrant tokenisers, weak randomness,
# atoi's silent failure) or builds SQL for PQexec from a format string.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='\b(sprintf|vsprintf|strcpy|strcat|strtok|atoi|atol|gets|rand|srand|random|mktemp|tmpnam)[[:space:]]*\('
if grep -nE "$pattern" broker/*.c broker/*.h lib/*.c include/countersign/*.h examples/forum/*.c 2>/dev/null | grep -v '^\s*/\?\*'; then
	echo "banned.sh: banned function used (see STYLE: use snprintf, strlcpy-style copies, RAND_bytes, util_parse_int64)" >&2
	exit 1
fi
# PQexec is only allowed in db.c, and only for constant scripts.
if grep -n 'PQexec[^P]' broker/*.c | grep -v '^broker/db.c:'; then
	echo "banned.sh: PQexec outside db.c" >&2
	exit 1
fi
if grep -ln '#include <libpq-fe.h>' broker/*.c | grep -v '^broker/db.c$'; then
	echo "banned.sh: only db.c may include libpq" >&2
	exit 1
fi
if grep -ln '#include <microhttpd.h>' broker/*.c | grep -v '^broker/http.c$'; then
	echo "banned.sh: only http.c may include libmicrohttpd" >&2
	exit 1
fi
echo "banned.sh: clean"
