# clawbot — the two commands: `make run` and `make test`. Both do all set-up themselves.
#
# Settings (override on the command line, e.g. `make run MODEL=my.gguf PORT=8080`):
MODEL          ?= stories260K.gguf
CHAT_TEMPLATE  ?= chatml
HOST           ?= 127.0.0.1
PORT           ?= 5000
BACKEND        ?= cpu
CLAWBOT_MODELS ?= $(abspath ../shared/models)
BUILD_TYPE     ?= RelWithDebInfo
# RelWithDebInfo's debug info: `lines` (file:line and function names in backtraces; the default, about a third
# less compile time) or `full` (variables too, for a debugger).
DEBUG_INFO     ?= lines
# -Werror in CI builds (CI=true), warnings only for people.
WERROR         ?= $(if $(CI),ON,OFF)
JOBS           ?= $(shell nproc)
PREFIX         ?= /usr/local
# Objects of build/ and build-frontend/ differ only in their folder: let them share cache entries.
export CCACHE_NOHASHDIR := 1

export CLAWBOT_MODELS

# ccache, where installed, makes rebuilds in a second build folder (or after `make clean`) cheap. Looked up
# when the recipe runs: on a fresh machine the bootstrap has just installed it.
LAUNCHER = $$(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CONFIGURE = cmake -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCLAWBOT_DEBUG_INFO=$(DEBUG_INFO) \
  -DCLAWBOT_WERROR=$(WERROR) $(LAUNCHER)

.PHONY: all deps configure configure-frontend build build-frontend run test test-only test-frontend install install-frontend \
  clean format drill

all: build

deps:
	@scripts/bootstrap.sh --backend $(BACKEND) > build-deps.prefix.tmp && mv build-deps.prefix.tmp .deps-prefix

configure: deps
	$(CONFIGURE) -S . -B build -DCLAWBOT_ENGINE=ON -DCLAWBOT_BACKEND=$(BACKEND) \
	  -DCLAWBOT_LLAMA_PREFIX="$$(cat .deps-prefix)" >/dev/null

# Everything: clawbot, clawbot-frontend (the front-end-only binary, from the same objects) and the tests.
build: configure
	cmake --build build -j $(JOBS)

configure-frontend:
	@scripts/bootstrap.sh --no-engine >/dev/null
	$(CONFIGURE) -S . -B build-frontend -DCLAWBOT_ENGINE=OFF >/dev/null

# A front-end-only machine: no engine, no llama.cpp needed (build-frontend/clawbot).
build-frontend: configure-frontend
	cmake --build build-frontend -j $(JOBS) --target clawbot

# Only what serving needs: clawbot itself, not the tests.
run: configure
	cmake --build build -j $(JOBS) --target clawbot
	./build/clawbot serve --model "$(MODEL)" --chat-template $(CHAT_TEMPLATE) --host $(HOST) --port $(PORT)

tests/compat/node_modules/.package-lock.json: tests/compat/package-lock.json
	cd tests/compat && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

# One build: the front-end tests run against build/clawbot-frontend.
test: build tests/compat/node_modules/.package-lock.json test-only

test-only:
	cd build && ctest --output-on-failure -j 2

# The failover drill alone (README "Backups, a cold standby and services"): drain, kill, cut and hang the primary
# under load in network namespaces, restore its state from the backup; prints the figures.
drill: configure
	cmake --build build -j $(JOBS) --target clawbot
	CLAWBOT_BIN=$(CURDIR)/build/clawbot node --test --test-reporter=spec tests/integration/drill.test.mjs

# The same front-end tests in a -DCLAWBOT_ENGINE=OFF build (what a machine without llama.cpp builds).
test-frontend: configure-frontend
	cmake --build build-frontend -j $(JOBS)
	cd build-frontend && ctest --output-on-failure

# Installs $(PREFIX)/bin/clawbot stripped, its debug info beside it in $(PREFIX)/bin/.debug/clawbot.debug (gdb
# finds it there), and the engine's libllama/ggml in $(PREFIX)/lib/clawbot. install-frontend: the front-end-only
# binary instead, no libraries.
install: configure
	cmake --build build -j $(JOBS) --target clawbot
	cmake --install build --prefix "$(PREFIX)" --component clawbot

install-frontend: build-frontend
	cmake --install build-frontend --prefix "$(PREFIX)" --component clawbot

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf build build-frontend .deps-prefix

# --- fuzzing and sanitizers (tests/fuzz; README "Fuzzing and sanitizers") ---
# `make fuzz FUZZ_SECONDS=300`: builds build-fuzz (clang, libFuzzer + ASan + UBSan, no engine) and runs each
# target for FUZZ_SECONDS, printing executions and crashes per target (FUZZ_TARGETS=a,b for a few).
# `make test-fuzz`: a short libFuzzer run of each target (CTest label fuzz; `make test TEST_FUZZ=1` adds it).
# `make fuzz-merge`: after `make fuzz`, keeps the inputs that reach new code in tests/fuzz/corpus/<target>/found/
# (libFuzzer -merge=1), so `make test`'s corpus replay (CTest label fuzz_replay, in the normal build) covers them.
# `make test-sanitize`: our code with ASan + UBSan (engine on, libllama uninstrumented) in build-sanitize,
# then the unit and integration tests.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_CXX     ?= clang++
.PHONY: build-fuzz fuzz fuzz-merge test-fuzz build-sanitize test-sanitize

build-fuzz:
	@scripts/bootstrap.sh --no-engine >/dev/null
	@command -v $(FUZZ_CXX) >/dev/null || { echo "make build-fuzz: needs $(FUZZ_CXX) with libFuzzer (Debian: apt-get install clang)" >&2; exit 1; }
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
	  -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) \
	  -DCLAWBOT_ENGINE=OFF -DCLAWBOT_FUZZ=ON -DCLAWBOT_TESTS=OFF -DCLAWBOT_WERROR=$(WERROR) $(LAUNCHER) >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets

fuzz: build-fuzz
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-merge: build-fuzz
	tests/fuzz/merge.sh build-fuzz $(FUZZ_TARGETS)

test-fuzz: build-fuzz
	cd build-fuzz && ctest --output-on-failure -L fuzz -j $(JOBS)

# `make test` replays every fuzz corpus in the normal build (2 s). The libFuzzer short run is opt-in (TEST_FUZZ=1):
# its second, clang build took 135 s of a cold `make test`'s 900 s on an idle 2-core machine, and its 5 s per
# target finds little that the replayed corpus does not hold; fuzzing proper is `make fuzz`.
TEST_FUZZ ?= 0
test: $(if $(filter 1,$(TEST_FUZZ)),test-fuzz)

# clang at -O1, as the fuzz build: gcc at -O2 with ASan + UBSan spent over 20 minutes of CPU on http_server.cpp
# alone (Beast's coroutines), clang about a tenth of that.
SANITIZE_CXX ?= clang++
build-sanitize: deps
	@command -v $(SANITIZE_CXX) >/dev/null || { echo "make build-sanitize: needs $(SANITIZE_CXX) (Debian: apt-get install clang)" >&2; exit 1; }
	cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
	  -DCMAKE_CXX_COMPILER=$(SANITIZE_CXX) -DCLAWBOT_ENGINE=ON \
	  -DCLAWBOT_BACKEND=$(BACKEND) -DCLAWBOT_LLAMA_PREFIX="$$(cat .deps-prefix)" -DCLAWBOT_SANITIZE=ON $(LAUNCHER) >/dev/null
	cmake --build build-sanitize -j $(JOBS)

test-sanitize: build-sanitize tests/compat/node_modules/.package-lock.json
	cd build-sanitize && ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	  UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} ctest --output-on-failure -j 2
