#!/usr/bin/env bash
# Packs what bench/gpu/check.sh needs on a GPU machine that has a CUDA toolchain but none of our Debian
# packages: the bundled llama.cpp source (from the dependency cache, without its git history, docs, models and
# tests), our clawbot (stripped) with the shared libraries it needs beyond glibc and libstdc++, and the model
# files the checks read (stories260K, the vocab files the synthesizer copies). About 27 MB.
#
#   bench/gpu/make-kit.sh [DIR]     (default .gpukit, which git ignores)
set -euo pipefail
cd "$(dirname "$0")/../.."
kit=${1:-.gpukit}
prefix=$(cat .deps-prefix 2>/dev/null || true)
[ -x build/clawbot ] || { echo "make-kit: build/clawbot missing: run 'make build' first" >&2; exit 1; }
[ -d "$prefix/src" ] || { echo "make-kit: no llama.cpp source in the dependency cache ($prefix)" >&2; exit 1; }
models=${CLAWBOT_MODELS:-../shared/models}
rm -rf "$kit" && mkdir -p "$kit/bin" "$kit/lib" "$kit/models"
(cd "$prefix" && XZ_OPT=-T0 tar -cJf - --anchored --transform 's,^src,llama.cpp,' --exclude=src/.git \
  --exclude=src/docs --exclude=src/models --exclude=src/tests --exclude=src/benches --exclude=src/media \
  --exclude=src/examples --exclude=src/gguf-py src) >"$kit/llama-src.tar.xz"
strip -o "$kit/bin/clawbot" build/clawbot
# llama.cpp's own libraries come from the GPU build there; the C/C++ runtime is the machine's own.
ldd build/clawbot | awk '/=> \//{print $3}' |
  grep -vE "^$prefix/|/lib(c|m|stdc\+\+|gcc_s|gomp|pthread|dl)\.so|ld-linux" |
  while read -r lib; do cp -L "$lib" "$kit/lib/"; done
cp "$models"/{stories260K.gguf,ggml-vocab-phi-3.gguf,ggml-vocab-bert-bge.gguf} "$kit/models/"
du -sh "$kit"
