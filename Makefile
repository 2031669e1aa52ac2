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
