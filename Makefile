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
# -Werror in CI builds (CI=true), warnings only for people.
WERROR         ?= $(if $(CI),ON,OFF)
JOBS           ?= $(shell nproc)
# ccache, where installed, makes rebuilds in a second build folder (or after `make clean`) cheap.
LAUNCHER       := $(if $(shell command -v ccache),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# Objects of build/ and build-frontend/ differ only in their folder: let them share cache entries.
export CCACHE_NOHASHDIR := 1

export CLAWBOT_MODELS

.PHONY: all deps build build-frontend run test test-only clean format

all: build

deps:
	@scripts/bootstrap.sh --backend $(BACKEND) > build-deps.prefix.tmp && mv build-deps.prefix.tmp .deps-prefix

build: deps
	cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCLAWBOT_ENGINE=ON \
	  -DCLAWBOT_BACKEND=$(BACKEND) -DCLAWBOT_LLAMA_PREFIX="$$(cat .deps-prefix)" -DCLAWBOT_WERROR=$(WERROR) $(LAUNCHER) >/dev/null
	cmake --build build -j $(JOBS)

# A front-end-only binary: no engine, no llama.cpp needed.
build-frontend:
	@scripts/bootstrap.sh --no-engine >/dev/null
	cmake -S . -B build-frontend -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCLAWBOT_ENGINE=OFF \
	  -DCLAWBOT_WERROR=$(WERROR) $(LAUNCHER) >/dev/null
	cmake --build build-frontend -j $(JOBS)

run: build
	./build/clawbot serve --model "$(MODEL)" --chat-template $(CHAT_TEMPLATE) --host $(HOST) --port $(PORT)

tests/compat/node_modules/.package-lock.json: tests/compat/package-lock.json
	cd tests/compat && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

test: build build-frontend tests/compat/node_modules/.package-lock.json test-only

test-only:
	cd build && ctest --output-on-failure -j 2
	cd build-frontend && ctest --output-on-failure

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf build build-frontend .deps-prefix

# --- fuzzing and sanitizers (tests/fuzz; README "Fuzzing and sanitizers") ---
# `make fuzz FUZZ_SECONDS=300`: builds build-fuzz (clang, libFuzzer + ASan + UBSan, no engine) and runs each
# target for FUZZ_SECONDS, printing executions and crashes per target (FUZZ_TARGETS=a,b for a few).
# `make test-fuzz`: the short run of each target that `make test` does (CTest label fuzz).
# `make test-sanitize`: our code with ASan + UBSan (engine on, libllama uninstrumented) in build-sanitize,
# then the unit and integration tests.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_CXX     ?= clang++
.PHONY: build-fuzz fuzz test-fuzz build-sanitize test-sanitize

build-fuzz:
	@scripts/bootstrap.sh --no-engine >/dev/null
	@command -v $(FUZZ_CXX) >/dev/null || { echo "make build-fuzz: needs $(FUZZ_CXX) with libFuzzer (Debian: apt-get install clang)" >&2; exit 1; }
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS="-O1 -gline-tables-only" \
	  -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) \
	  -DCLAWBOT_ENGINE=OFF -DCLAWBOT_FUZZ=ON -DCLAWBOT_TESTS=OFF -DCLAWBOT_WERROR=$(WERROR) $(LAUNCHER) >/dev/null
	cmake --build build-fuzz -j $(JOBS) --target fuzz_targets

fuzz: build-fuzz
	tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

test-fuzz: build-fuzz
	cd build-fuzz && ctest --output-on-failure -L fuzz -j $(JOBS)

# `make test` ends with the short fuzz run (TEST_FUZZ=0 skips it): on an idle 2-core machine the cold clang build
# of the targets took 86 s (167 s CPU, no ccache) and the run 37 s.
TEST_FUZZ ?= 1
test: $(if $(filter 1,$(TEST_FUZZ)),test-fuzz)

build-sanitize: deps
	cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLAWBOT_ENGINE=ON \
	  -DCLAWBOT_BACKEND=$(BACKEND) -DCLAWBOT_LLAMA_PREFIX="$$(cat .deps-prefix)" -DCLAWBOT_SANITIZE=ON $(LAUNCHER) >/dev/null
	cmake --build build-sanitize -j $(JOBS)

test-sanitize: build-sanitize tests/compat/node_modules/.package-lock.json
	cd build-sanitize && ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	  UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} ctest --output-on-failure -j 2
