# lakeproxy: a plain Makefile with pkg-config.
#   make               build ./lakeproxy
#   make check         unit + integration + real-client tests (SANITIZE=1: under ASan+UBSan)
#   make demo          throwaway PostgreSQL + lakeproxy with conf/demo.yaml (PORT=6432)
#   make bench         pgbench through lakeproxy (PGO=1), PgBouncer and directly
#   make PGO=1         ./lakeproxy with profile-guided optimisation (a training run first)
#   make soak          2,000 clients for SOAK_SECONDS (600): no errors, RSS flat, fds back
#   make valgrind      integration suites with lakeproxy under valgrind (leaks, invalid access)
#   make format-check  clang-format dry run

CC      ?= cc
PREFIX  ?= /usr/local
PKGS    := libevent libevent_openssl libssl libcrypto libpq yaml-0.1 jansson libprotobuf-c
VERSION := 0.1.0

ifeq ($(SANITIZE),1)
BUILD   := build/san
OPT     := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(PGO),gen)
# instrumented for bench/train.sh, which writes the profile (.gcda beside each object); in
# the directory of the build it steers, as a static function's profile is keyed by its
# object's path
BUILD   := build/pgo
OPT     := -O2 -flto=auto -fprofile-generate -fprofile-update=atomic
else ifeq ($(PGO),1)
# profile-guided: the paths a transaction takes laid out together and inlined for speed, the
# code beside them moved out of their cache lines; code the training never ran is built as
# without a profile (-fprofile-partial-training). Needs PostgreSQL and pgbench to train.
BUILD   := build/pgo
OPT     := -O2 -flto=auto -fprofile-use -fprofile-partial-training -Wno-missing-profile
PROFILE := build/pgo/profile.stamp
else
BUILD   := build/rel
# link-time optimisation inlines the small reader/writer helpers of buf.c into the hot paths
# (masking rewrites every value of a masked column through them)
OPT     := -O2 -flto=auto
endif

CFLAGS_ALL  = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) \
              -DLAKEPROXY_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS)) \
              $(SYSTEMD_CFLAGS) $(CFLAGS)
# libsystemd is optional: with it, lakeproxy tells systemd when it is ready (Type=notify)
SYSTEMD_CFLAGS := $(shell pkg-config --exists libsystemd && echo -DHAVE_SYSTEMD)
SYSTEMD_LIBS   := $(shell pkg-config --exists libsystemd && pkg-config --libs libsystemd)
LDLIBS_ALL  = $(shell pkg-config --libs $(PKGS)) $(SYSTEMD_LIBS) -lpg_query -lunistring -lpthread -lm $(LDLIBS)
LDFLAGS_ALL = $(OPT) $(LDFLAGS)

SRC       := $(wildcard src/*.c)
LIB_OBJ   := $(patsubst src/%.c,$(BUILD)/src/%.o,$(filter-out src/main.c,$(SRC)))
UNIT_SRC  := $(wildcard tests/unit/*.c) $(wildcard tests/fuzz/fuzz_*.c)
INTEG_SRC := $(wildcard tests/integration/*.c) $(wildcard tests/lib/*.c)
UNIT_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(UNIT_SRC))
INTEG_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(INTEG_SRC))

.PHONY: all check demo bench soak valgrind clean format format-check install unit integration fuzz \
        lakeproxy
all: lakeproxy

$(BUILD)/lakeproxy: $(BUILD)/src/main.o $(LIB_OBJ)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# ./lakeproxy is the optimised build that make last made (PGO=1: profile-guided);
# SANITIZE=1 tests use build/san/lakeproxy.
ifeq ($(SANITIZE),1)
lakeproxy:
	$(MAKE) SANITIZE= lakeproxy
else
lakeproxy: $(BUILD)/lakeproxy
	cp $< $@
endif

$(BUILD)/%.o: %.c $(wildcard src/*.h) $(wildcard tests/lib/*.h) $(wildcard tests/fuzz/*.h) \
              $(PROFILE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc -Itests/lib -Itests/fuzz -MMD -c -o $@ $<

# The training run of PGO=1: an instrumented build serves pgbench (bench/train.sh); its
# profile is taken again whenever a source changes.
build/pgo/profile.stamp: $(SRC) $(wildcard src/*.h) bench/train.sh
	rm -f build/pgo/src/*.o build/pgo/src/*.gcda build/pgo/lakeproxy
	$(MAKE) PGO=gen build/pgo/lakeproxy
	bash bench/train.sh build/pgo/lakeproxy
	rm -f build/pgo/src/*.o build/pgo/lakeproxy
	touch $@

$(BUILD)/test_unit: $(UNIT_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcriterion

$(BUILD)/test_integration: $(INTEG_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcriterion

unit: $(BUILD)/test_unit
integration: $(BUILD)/test_integration $(BUILD)/lakeproxy

# node-postgres and Postgres.js for tests/clients (from the npm registry, versions pinned by package-lock.json)
NODE_CLIENTS := tests/clients/node/node_modules/.package-lock.json
$(NODE_CLIENTS): tests/clients/node/package.json tests/clients/node/package-lock.json
	@command -v npm >/dev/null || { echo "make check needs npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix tests/clients/node --no-audit --no-fund

# Runs every suite and ends with one "N passed, N failed" line; non-zero exit on any failure.
# Missing Debian packages are installed first (as root; otherwise named), then the tests built.
check:
	bash tests/lib/need_packages.sh install check
	$(MAKE) $(BUILD)/test_unit $(BUILD)/test_integration $(BUILD)/lakeproxy $(NODE_CLIENTS)
	BUILD=$(BUILD) SANITIZE=$(SANITIZE) bash tests/run_all.sh

# (no prerequisite: demo.sh installs the packages the build needs first, then makes lakeproxy)
demo:
	bash tests/lib/demo.sh $(PORT)

bench:
	$(MAKE) PGO=1 lakeproxy
	bash bench/run.sh $(BENCH_ARGS)
	bash bench/mask.sh -o "$$(ls -t bench/results/*.md | head -n 1)"

# Not part of `make check`: 2,000 pgbench clients over 20 server connections for SOAK_SECONDS.
soak: lakeproxy
	bash bench/soak.sh

# Not part of `make check`: these criterion suites (names as in TestSuite) with lakeproxy under
# valgrind (memcheck); a definite leak or an invalid access fails the test that stopped it.
# Not abuse: valgrind keeps a descriptor limit of its own, which lakeproxy cannot raise and
# prlimit does not change, so its descriptor-limit tests cannot pass under it (the rest of
# abuse ran clean under valgrind on 2026-12-01).
VALGRIND_SUITES ?= session txn prepared protocol rls masking
valgrind: $(BUILD)/test_unit $(BUILD)/test_integration $(BUILD)/lakeproxy
	LP_VALGRIND=1 BUILD=$(BUILD) FILTER='@($(subst $(eval) ,|,$(strip $(VALGRIND_SUITES))))/*' \
	    bash tests/run_all.sh

# libFuzzer (clang, with ASan + UBSan): each target for FUZZ_SECONDS on its corpus under
# tests/fuzz/corpus/<target>; new inputs that add coverage are kept there (commit them).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := client server startup config mask
FUZZ_BUILD   := build/fuzz
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
                -DLAKEPROXY_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS)) \
                -Isrc -Itests/fuzz
FUZZ_LIB_OBJ := $(patsubst src/%.c,$(FUZZ_BUILD)/src/%.o,$(filter-out src/main.c,$(SRC)))

$(FUZZ_BUILD)/src/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_pump.c $(FUZZ_LIB_OBJ)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -DFUZZ_MAIN -o $@ $< tests/fuzz/fuzz_pump.c \
	    $(FUZZ_LIB_OBJ) $(LDLIBS_ALL)

fuzz: $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	    mkdir -p tests/fuzz/corpus/$$t $(FUZZ_BUILD)/crashes; \
	    echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	    $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	        -artifact_prefix=$(FUZZ_BUILD)/crashes/$$t- tests/fuzz/corpus/$$t || exit 1; \
	done

# An upgrade keeps the administrator's configuration: an existing lakeproxy.yaml stays as it
# is, the new annotated reference going beside it as lakeproxy.yaml.example. INSTALL_BIN: the
# binary installed (make check installs the one it tested into a DESTDIR).
INSTALL_BIN ?= lakeproxy
install: $(INSTALL_BIN)
	install -D -m 0755 $(INSTALL_BIN) $(DESTDIR)$(PREFIX)/bin/lakeproxy
	@conf=$(DESTDIR)/etc/lakeproxy/lakeproxy.yaml; \
	if [ -e "$$conf" ]; then \
		install -m 0640 conf/lakeproxy.yaml "$$conf.example" && \
		echo "kept $$conf as it is; this version's annotated reference: $$conf.example"; \
	else \
		install -D -m 0640 conf/lakeproxy.yaml "$$conf"; \
	fi
	install -d $(DESTDIR)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/lakeproxy
	sed 's#/usr/local#$(PREFIX)#g' systemd/lakeproxy.service \
		>$(DESTDIR)/lib/systemd/system/lakeproxy.service
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/lakeproxy/README.md

format:
	clang-format -i src/*.c src/*.h tests/*/*.c tests/*/*.h

format-check:
	clang-format --dry-run --Werror src/*.c src/*.h tests/*/*.c tests/*/*.h

clean:
	rm -rf build lakeproxy

-include $(shell find build -name '*.d' 2>/dev/null)
