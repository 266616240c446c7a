# Countersign: build, run, test, fuzz and sanitizer targets.
#
#   make run     install what is missing, build, start PostgreSQL under
#                ./var/ and the broker with a demo agent (see README.md)
#   make test    build with -Werror and run every unit, e2e and interop test
#   make asan    the same suite against an ASan+UBSan build
#   make fuzz    run every libFuzzer target for FUZZ_SECONDS each
#   make lint    banned functions, cppcheck
#   make leakcheck  >= 10k mixed requests against the ASan+LSan build
#   make soak    SOAK_SECONDS (600) of load, failing on RSS growth

CC       ?= cc
PKGS     := libmicrohttpd jansson libssl libcrypto libpq libcurl gnutls
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lmicrohttpd -ljansson -lssl -lcrypto -lpq -lcurl -lgnutls)

WARN     := -Wall -Wextra -Werror -Wpedantic -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE $(WARN) -Ibroker -Ilib -Iinclude $(PKG_CFLAGS)
HARDEN   := -O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
SANITIZE := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
            -fno-omit-frame-pointer

BUILD    ?= build
MODE     ?= release
ifeq ($(MODE),asan)
  CFLAGS_MODE := $(SANITIZE)
  LDFLAGS_MODE := -fsanitize=address,undefined
else
  CFLAGS_MODE := $(HARDEN) -g
  LDFLAGS_MODE := -pie -Wl,-z,relro,-z,now
endif
CFLAGS_ALL := $(CFLAGS_BASE) $(CFLAGS_MODE) $(CFLAGS)

MIGRATIONS := $(sort $(wildcard migrations/*.sql))
UI_ASSETS  := $(sort $(wildcard ui/*.html ui/*.css ui/*.js ui/*.svg))
LIB_SRCS := $(filter-out broker/main.c,$(wildcard broker/*.c))
LIB_OBJS := $(patsubst broker/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) \
            $(BUILD)/obj/verify.o $(BUILD)/obj/embedded_migrations.o \
            $(BUILD)/obj/embedded_ui.o
# The verify library for services: our JOSE module plus the claim checks,
# built position-independent as libcountersign-verify.{a,so}.
VERIFY_SRCS := lib/verify.c lib/report.c broker/jose.c broker/b64.c
VERIFY_OBJS := $(patsubst %.c,$(BUILD)/pic/%.o,$(notdir $(VERIFY_SRCS)))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SECONDS ?= 10

.PHONY: all deps run stop demo test unit e2e asan fuzz lint clean bench \
        leakcheck soak

all: $(BUILD)/countersign $(BUILD)/libcountersign-verify.a \
     $(BUILD)/libcountersign-verify.so $(BUILD)/forum

deps:
	deploy/deps.sh build

$(BUILD)/obj $(BUILD)/tests $(BUILD)/fuzz:
	mkdir -p $@

$(BUILD)/embed: tools/embed.c | $(BUILD)/obj
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -o $@ $<

$(BUILD)/obj/embedded_migrations.c: $(MIGRATIONS) $(BUILD)/embed
	$(BUILD)/embed embedded_migrations $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/embedded_migrations.o: $(BUILD)/obj/embedded_migrations.c
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -c -o $@ $<

# The approver web page (ui/), served at /ui/ from the binary itself.
$(BUILD)/obj/embedded_ui.c: $(UI_ASSETS) $(BUILD)/embed
	$(BUILD)/embed embedded_ui $(UI_ASSETS) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/embedded_ui.o: $(BUILD)/obj/embedded_ui.c
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes -c -o $@ $<

$(BUILD)/obj/%.o: broker/%.c $(wildcard broker/*.h) | $(BUILD)/obj
	@echo "  CC      $<"
	@$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/obj/verify.o: lib/verify.c lib/verify_internal.h include/countersign/verify.h broker/jose.h | $(BUILD)/obj
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/pic:
	mkdir -p $@

$(BUILD)/pic/verify.o: lib/verify.c lib/verify_internal.h include/countersign/verify.h | $(BUILD)/pic
	$(CC) $(CFLAGS_ALL) -fPIC -fvisibility=default -c -o $@ $<

$(BUILD)/pic/report.o: lib/report.c include/countersign/report.h include/countersign/verify.h | $(BUILD)/pic
	$(CC) $(CFLAGS_ALL) -fPIC -c -o $@ $<

$(BUILD)/pic/%.o: broker/%.c $(wildcard broker/*.h) | $(BUILD)/pic
	@echo "  CC      $< (PIC)"
	@$(CC) $(CFLAGS_ALL) -fPIC -c -o $@ $<

$(BUILD)/libcountersign-verify.a: $(VERIFY_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libcountersign-verify.so: $(VERIFY_OBJS)
	$(CC) -shared $(LDFLAGS_MODE:-pie=) -Wl,-soname,libcountersign-verify.so.0 \
	    -Wl,--version-script=lib/verify.map \
	    -o $@ $^ -lcrypto -ljansson -lcurl -lpthread
	@# The name a linked program asks for at run time (its soname), so
	@# LD_LIBRARY_PATH=$(BUILD) finds the library without an install.
	ln -sf libcountersign-verify.so $(BUILD)/libcountersign-verify.so.0

$(BUILD)/libcountersign.a: $(LIB_OBJS)
	@echo "  AR      $@"
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/countersign: $(BUILD)/obj/main.o $(BUILD)/libcountersign.a
	$(CC) $(LDFLAGS_MODE) -o $@ $^ $(PKG_LIBS) -lpthread

$(BUILD)/tests/%: tests/unit/%.c tests/unit/check.h $(BUILD)/libcountersign.a | $(BUILD)/tests
	@echo "  CCLD    $@"
	@$(CC) $(CFLAGS_ALL) -Itests/unit $(LDFLAGS_MODE) -o $@ $< \
	    $(BUILD)/libcountersign.a $(PKG_LIBS) -lpthread -lm

# The example forum of the demo (docs/demo.md): a resource server linked
# against the static verify library, as a C service would be.
$(BUILD)/forum: examples/forum/forum.c include/countersign/verify.h $(BUILD)/libcountersign-verify.a
	@echo "  CCLD    $@"
	@$(CC) $(CFLAGS_ALL) $(LDFLAGS_MODE) -o $@ $< $(BUILD)/libcountersign-verify.a \
	    -lmicrohttpd -ljansson -lcrypto -lcurl -lpthread

run: deps all
	deploy/run.sh

# The story of docs/demo.md against the broker of `make run` (started if
# it is not running); exits non-zero if any step surprises it.
demo: deps all
	CS_BIN=$(BUILD)/countersign FORUM_BIN=$(BUILD)/forum deploy/demo.sh

stop:
	deploy/run.sh stop

# The whole suite: unit binaries, then e2e and interop tests against a real
# PostgreSQL and the real daemon. Ends with one "N passed, N failed" line.
test: all $(UNIT_BINS)
	tests/run.sh --build $(BUILD)

unit: $(UNIT_BINS)
	tests/run.sh --build $(BUILD) --unit-only

asan:
	$(MAKE) BUILD=build-asan MODE=asan all \
	    $(patsubst $(BUILD)/%,build-asan/%,$(UNIT_BINS))
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1 \
	    tests/run.sh --build build-asan

fuzz: | $(BUILD)/fuzz
	tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS)

lint:
	tools/banned.sh
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	    --inline-suppr -Ibroker --suppress=missingIncludeSystem \
	    --suppress=unknownMacro broker lib examples/forum

clean:
	rm -rf build build-asan

# Benchmarks: figures only, no assertions (docs/benchmarks.md records them).
bench: all
	tests/bench/run.sh

# At least 10,000 mixed good and hostile requests against the sanitizer
# build, then a clean shutdown; fails on any leak, memory error, undefined
# behaviour or 5xx (tests/bench/leakcheck.sh; about 40 s).
leakcheck:
	$(MAKE) BUILD=build-asan MODE=asan build-asan/countersign
	tests/bench/leakcheck.sh

# Load at a fixed rate for SOAK_SECONDS (default 600), sampling the
# broker's RSS; fails if it grows faster than SOAK_MAX_SLOPE KB/min.
soak: all
	tests/bench/soak.sh
