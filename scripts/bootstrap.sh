#!/usr/bin/env bash
# Idempotent dependency bootstrap for clawbot.
#   1. installs the Debian packages the build needs (only those missing);
#   2. fetches llama.cpp from the pinned npm package node-llama-cpp (no install scripts run),
#      verifies the tarball against the registry's integrity hash, clones the bundled git release,
#      and builds libllama + ggml into a cache outside the checkout.
# Usage: scripts/bootstrap.sh [--no-engine] [--with-tools] [--no-apt] [--backend cpu|cuda|vulkan]
#   --with-tools: also build llama-server and llama-bench (bench/compare.sh asks for them), and whisper.cpp's
#                 whisper-cli and whisper-bench (bench/transcribe.sh), into the same cache
#   --no-apt: only report missing packages (a machine whose packages someone else manages)
# Env: CLAWBOT_NODE_LLAMA_CPP_TARBALL=path.tgz uses that tarball instead of npm (air-gapped; still verified),
#      CLAWBOT_NODEJS_WHISPER_TARBALL=path.tgz the same for nodejs-whisper (whisper.cpp),
#      CLAWBOT_BUILD_JOBS=N parallel jobs, XDG_CACHE_HOME moves the cache.
# Prints the dependency prefix (the install dir) as its last line on stdout.
set -euo pipefail

NODE_LLAMA_CPP_VERSION=3.22.1
NODE_LLAMA_CPP_INTEGRITY='sha512-bltIipuWmc123H7tMIgDGKSsSrhmhlQYeVUC48XTjVW7XGJJiJJyCdlTMzQ/LiWoPkGDpcL4FviDpgw7qfTiDw=='
# whisper.cpp (speech to text) from the npm package nodejs-whisper, which carries its source in cpp/whisper.cpp
NODEJS_WHISPER_VERSION=0.3.1
NODEJS_WHISPER_INTEGRITY='sha512-ceoilUVraRuR5FnNyXpGQT2auAR48Oc3AQBEmkXnVpSn9iN6yVRzQBFCqVTGWbk6Wdi95NhvwXNzFvuR7erLWw=='

with_engine=1
with_tools=0
use_apt=1
backend=${CLAWBOT_BACKEND:-cpu}
while [ $# -gt 0 ]; do
  case "$1" in
    --no-engine) with_engine=0 ;;
    --with-tools) with_tools=1 ;;
    --no-apt) use_apt=0 ;;
    --backend) backend=$2; shift ;;
    *) echo "bootstrap: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done

step=""
fail() {
  echo "bootstrap: FAILED at step '$step': $1" >&2
  [ -n "${2:-}" ] && echo "bootstrap: what to do: $2" >&2
  exit 1
}

# An npm package's tarball, pinned by its integrity (sha512): `npm pack` into DIR without install scripts, or,
# on an air-gapped node, the tarball named by the variable OVERRIDE (brought by hand, checked all the same).
# Sets `tarball`.
fetch_pinned_package() {  # NAME VERSION INTEGRITY DIR OVERRIDE
  local name=$1 version=$2 integrity=$3 dir=$4 override=$5 algo got
  if [ -n "${!override:-}" ]; then
    step="use tarball ${!override}"
    [ -f "${!override}" ] || fail "no such file" "set $override to the .tgz from 'npm pack $name@$version'"
    tarball="${!override}"
  else
    step="npm pack $name@$version"
    log "$step (no install scripts run)"
    (cd "$dir" && npm pack --silent --ignore-scripts "$name@$version" >pack.out 2>pack.err) ||
      fail "$(tail -3 "$dir/pack.err")" "check that the npm registry is reachable (npm ping) and that npm works"
    tarball="$dir/$(tail -1 "$dir/pack.out")"
    [ -f "$tarball" ] || fail "npm pack produced no tarball" "run 'npm pack $name@$version' by hand"
  fi
  step="verify the $name tarball's integrity"
  algo=${integrity%%-*}
  got=$(openssl dgst "-$algo" -binary "$tarball" | base64 -w0)
  [ "$got" = "${integrity#*-}" ] || fail "tarball hash $algo-$got does not match the pinned $integrity" \
    "the registry served different bytes: do not build from it; check the pinned version and integrity in scripts/bootstrap.sh"
  log "integrity ok ($algo)"
}
trap 'rc=$?; [ $rc -ne 0 ] && [ -n "$step" ] && echo "bootstrap: step \"$step\" exited with status $rc" >&2' EXIT
log() { echo "bootstrap: $*" >&2; }

# ---------------------------------------------------------------- 1. Debian packages
# Each need is checked by what the build uses (a header, a command), so newer releases (Ubuntu's boost 1.83,
# say) count too; only what is missing is installed, under Debian 12's package name.
step="debian packages"
needs=(
  "cmd:g++ build-essential" "cmd:cmake cmake" "cmd:ninja ninja-build" "cmd:git git" "cmd:pkg-config pkg-config"
  "cmd:curl curl" "file:/etc/ssl/certs/ca-certificates.crt ca-certificates"
  "hdr:boost/beast.hpp libboost1.81-dev" "hdr:nlohmann/json.hpp nlohmann-json3-dev" "hdr:CLI/CLI.hpp libcli11-dev"
  "hdr:spdlog/spdlog.h libspdlog-dev" "hdr:fmt/format.h libfmt-dev" "hdr:openssl/ssl.h libssl-dev"
  "hdr:sqlite3.h libsqlite3-dev" "hdr:gtest/gtest.h libgtest-dev" "hdr:gmock/gmock.h libgmock-dev"
  "hdr:histedit.h libedit-dev" "hdr:ncurses.h libncurses-dev" "cmd:node nodejs" "cmd:npm npm" "cmd:promtool prometheus" "cmd:tmux tmux"
  "cmd:openssl openssl" "cmd:ccache ccache"
  "cmd:amtool prometheus-alertmanager"  # make test: amtool check-config on deploy/alertmanager
  # mDNS/DNS-SD: the Avahi client library (serve and discover use the daemon where it runs); the tests run
  # avahi-daemon on a private D-Bus bus in network namespaces and firewall a port there
  "hdr:avahi-client/client.h libavahi-client-dev" "file:/usr/sbin/avahi-daemon avahi-daemon" "cmd:avahi-browse avahi-utils"
  "cmd:dbus-daemon dbus" "file:/usr/sbin/ip iproute2" "file:/usr/sbin/iptables iptables"
  "cmd:flock util-linux" "cmd:objcopy binutils"
  # backups, the cold standby and the services (issue 24): restic driven by `clawbot backup`, sqlite3 for the
  # tests' writer, rsync over SSH for `clawbot standby` (its test runs its own sshd), libsystemd for sd_notify,
  # systemd-analyze to verify the units
  "cmd:restic restic" "cmd:sqlite3 sqlite3" "cmd:rsync rsync" "cmd:ssh openssh-client" "file:/usr/sbin/sshd openssh-server"
  "hdr:systemd/sd-daemon.h libsystemd-dev" "cmd:systemd-analyze systemd"
  "cmd:python3 python3"  # the sd_notify test binds a Unix datagram socket (Node cannot)
  # the knowledge base (clawbot kb): HTML, PDF and DOCX readers; debian-faq is the evaluation set's documents
  "hdr:gumbo.h libgumbo-dev" "hdr:poppler/cpp/poppler-document.h libpoppler-cpp-dev" "hdr:zip.h libzip-dev"
  "hdr:pugixml.hpp libpugixml-dev" "file:/usr/share/doc/debian/FAQ/index.en.html debian-faq"
  # the dashboard's browser tests: Debian's Chromium, driven by playwright-core (tests/compat; no browser download)
  "cmd:chromium chromium"
  # speech to text: libsndfile decodes WAV, FLAC, OGG/Vorbis/Opus and MP3 (1.1+); PortAudio captures the
  # microphone; the tests speak with espeak-ng, convert with sox and read pocketsphinx-testdata's recordings
  "hdr:sndfile.h libsndfile1-dev" "hdr:portaudio.h portaudio19-dev" "cmd:espeak-ng espeak-ng" "cmd:sox sox"
  "file:/usr/share/pocketsphinx/test/data/librivox/fileids pocketsphinx-testdata"
)
missing=()
for need in "${needs[@]}"; do
  what=${need%% *} package=${need##* }
  case "$what" in
    cmd:*) command -v "${what#cmd:}" >/dev/null 2>&1 && continue ;;
    file:*) [ -e "${what#file:}" ] && continue ;;
    hdr:*) [ -e "/usr/include/${what#hdr:}" ] || [ -e "/usr/local/include/${what#hdr:}" ] && continue ;;
  esac
  missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ] && [ "$use_apt" -eq 0 ]; then
  log "warning: missing (not installed, --no-apt): ${missing[*]}"
elif [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    "${sudo_cmd[@]}" apt-get update >&2 || fail "apt-get update failed" "check access to the Debian mirror, and run as root or with sudo"
    "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
      fail "apt-get install ${missing[*]} failed" "run it by hand to see why (needs root and a Debian 12 package mirror)"
  fi
fi

if [ "$with_engine" -eq 0 ]; then
  step=""
  echo "none"
  exit 0
fi

# ---------------------------------------------------------------- 2. llama.cpp from node-llama-cpp
# The cache is keyed by the package version, the backend and a hash of the build options and the compiler, so
# a changed option builds afresh beside the old one. The build tree stays in the cache: `--with-tools` later
# builds llama-server and llama-bench in it without compiling libllama again.
step="llama.cpp build options"
# Only libllama and ggml (CPU backend unless asked, tuned for this CPU); no tests, examples or tools, which
# `--with-tools` turns on in the same build tree (the libraries' objects stay valid); llama.cpp's `common`
# library comes in a step of its own below.
option_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=ON)
no_tools=(-DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF)
with_tools_args=(-DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON)
case "$backend" in
  cpu) ;;
  cuda) option_args+=(-DGGML_CUDA=ON) ;;
  vulkan) option_args+=(-DGGML_VULKAN=ON) ;;
  *) fail "unknown backend '$backend'" "use cpu, cuda or vulkan" ;;
esac
jobs=${CLAWBOT_BUILD_JOBS:-$(nproc)}
options_hash=$({ printf '%s\n' "${option_args[@]}"; c++ --version | head -1; } | sha256sum | cut -c1-8)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/clawbot/deps
key="node-llama-cpp-${NODE_LLAMA_CPP_VERSION}-${backend}-${options_hash}"
prefix="$cache_root/$key"
stamp="$prefix/.complete"
tools_stamp="$prefix/.tools-complete"
mkdir -p "$cache_root"
# One bootstrap at a time per cache entry (two `make` runs, or a build and a comparison, may start together).
exec 9>"$cache_root/$key.lock"
flock 9

if [ -f "$stamp" ]; then
  log "llama.cpp found in cache: $prefix"
else
  rm -rf "$prefix"
  mkdir -p "$prefix/download"
  fetch_pinned_package node-llama-cpp "$NODE_LLAMA_CPP_VERSION" "$NODE_LLAMA_CPP_INTEGRITY" "$prefix/download" \
    CLAWBOT_NODE_LLAMA_CPP_TARBALL

  step="extract git bundle"
  tar -xzf "$tarball" -C "$prefix/download" package/llama/gitRelease.bundle package/llama/binariesGithubRelease.json 2>/dev/null ||
    tar -xzf "$tarball" -C "$prefix/download" package/llama/gitRelease.bundle ||
    fail "the tarball has no llama/gitRelease.bundle" "the pinned node-llama-cpp version must ship the llama.cpp bundle"

  # The source stays in the cache (src/): later benchmarks and readers of tools/server use it, and the kept
  # build tree (build/) points at it.
  step="git clone bundle"
  git -c advice.detachedHead=false clone --quiet "$prefix/download/package/llama/gitRelease.bundle" "$prefix/src" >&2 ||
    fail "git clone of the bundle failed" "check free disk space in $cache_root"
  tag=$(sed -n 's/.*"release": *"\([^"]*\)".*/\1/p' "$prefix/download/package/llama/binariesGithubRelease.json" 2>/dev/null || true)
  release="${tag:-unknown} ($(git -C "$prefix/src" rev-parse --short HEAD))"
  log "llama.cpp release $release"

  step="configure llama.cpp ($backend)"
  cmake -S "$prefix/src" -B "$prefix/build" "${option_args[@]}" "${no_tools[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_INSTALL_RPATH="$prefix/lib" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON >"$prefix/configure.log" 2>&1 ||
    fail "cmake configure failed (log: $prefix/configure.log)" "read the log; for cuda/vulkan the toolkit must be installed"

  # Only what clawbot links: libllama and ggml (the tools, 123 more files, come with --with-tools).
  step="build llama.cpp"
  log "building libllama and ggml with $jobs jobs (first time only; a few minutes)"
  cmake --build "$prefix/build" -j "$jobs" --target llama ggml >"$prefix/build.log" 2>&1 ||
    fail "build failed (log: $prefix/build.log)" "read the tail of the log; free memory/disk and rerun"

  step="install llama.cpp"
  # The top level (libllama, headers, CMake config) without its subfolders, then ggml and src.
  {
    cmake -DCMAKE_INSTALL_LOCAL_ONLY=ON -DCMAKE_INSTALL_PREFIX="$prefix" -P "$prefix/build/cmake_install.cmake" &&
      cmake -DCMAKE_INSTALL_PREFIX="$prefix" -P "$prefix/build/ggml/cmake_install.cmake" &&
      cmake -DCMAKE_INSTALL_PREFIX="$prefix" -P "$prefix/build/src/cmake_install.cmake"
  } >"$prefix/install.log" 2>&1 || fail "install failed (log: $prefix/install.log)" "check free disk space in $cache_root"
  echo "$release" >"$prefix/LLAMA_RELEASE"
  rm -rf "$prefix/download"
  touch "$stamp"  # last: an interrupted run is redone from scratch
  log "llama.cpp $release ready in $prefix"
fi

# The part of llama.cpp's `common` library that serve uses (its chat layer: Jinja templates, tool-call grammars
# and parsers, JSON schema to grammar), as one static library built by scripts/llama-common/CMakeLists.txt from
# the cached source: upstream's whole library also compiles its argument parser, downloader and cpp-httplib,
# which we never call. A step of its own, with a stamp named by a hash of that CMakeLists.txt, so that a cache
# built before it (or before a change to it) gains it without compiling libllama again. Its headers go to
# include/llama-common (with jinja/), apart from libllama's.
common_project="$(cd "$(dirname "$0")" && pwd)/llama-common"
common_stamp="$prefix/.common-chat-$(sha256sum "$common_project/CMakeLists.txt" | cut -c1-8)-complete"
if [ ! -f "$common_stamp" ]; then
  step="configure llama.cpp's common library"
  rm -rf "$prefix/build-common-chat"
  cmake -S "$common_project" -B "$prefix/build-common-chat" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_SOURCE="$prefix/src" -DLLAMA_PREFIX="$prefix" -DLLAMA_RELEASE="$(cat "$prefix/LLAMA_RELEASE")" \
    -DCMAKE_INSTALL_PREFIX="$prefix" >"$prefix/configure-common.log" 2>&1 ||
    fail "cmake configure failed (log: $prefix/configure-common.log)" "read the log"
  step="build llama.cpp's common library"
  log "building llama.cpp's chat layer (common) with $jobs jobs (first time only; about a minute)"
  cmake --build "$prefix/build-common-chat" -j "$jobs" >"$prefix/build-common.log" 2>&1 ||
    fail "build failed (log: $prefix/build-common.log)" "read the tail of the log; free memory/disk and rerun"
  step="install llama.cpp's common library"
  {
    rm -rf "$prefix/include/llama-common" &&
      mkdir -p "$prefix/include/llama-common/jinja" &&
      cp -f "$prefix/src/common/"*.h "$prefix/include/llama-common/" &&
      cp -f "$prefix/src/common/jinja/"*.h "$prefix/include/llama-common/jinja/" &&
      cmake --install "$prefix/build-common-chat"
  } >"$prefix/install-common.log" 2>&1 || fail "install failed (log: $prefix/install-common.log)" "check free disk space in $cache_root"
  touch "$common_stamp"
  log "llama.cpp's chat layer ready in $prefix/lib"
fi

# whisper.cpp (speech to text), built against the ggml above so that one process holds one ggml: only the
# library (one C++ file) unless --with-tools, which adds whisper-cli and whisper-bench for bench/transcribe.sh.
# A step of its own with a stamp named by the package version, so that a cache built before it gains it
# without compiling libllama again.
whisper_stamp="$prefix/.whisper-$NODEJS_WHISPER_VERSION-complete"
whisper_tools_stamp="$prefix/.whisper-$NODEJS_WHISPER_VERSION-tools-complete"
whisper_src="$prefix/whisper-src"
whisper_options=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DWHISPER_USE_SYSTEM_GGML=ON
  -DCMAKE_PREFIX_PATH="$prefix" -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_SERVER=OFF -DWHISPER_ALL_WARNINGS=OFF
  -DWHISPER_SDL2=OFF -DWHISPER_CURL=OFF -DCMAKE_INSTALL_RPATH="$prefix/lib" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON)
if [ ! -f "$whisper_stamp" ]; then
  rm -rf "$whisper_src" "$prefix/build-whisper" "$prefix/whisper-download"
  mkdir -p "$prefix/whisper-download"
  fetch_pinned_package nodejs-whisper "$NODEJS_WHISPER_VERSION" "$NODEJS_WHISPER_INTEGRITY" \
    "$prefix/whisper-download" CLAWBOT_NODEJS_WHISPER_TARBALL
  step="extract whisper.cpp"
  tar -xzf "$tarball" -C "$prefix/whisper-download" package/cpp/whisper.cpp ||
    fail "the tarball has no cpp/whisper.cpp" "the pinned nodejs-whisper version must carry the whisper.cpp source"
  mv "$prefix/whisper-download/package/cpp/whisper.cpp" "$whisper_src"
  rm -rf "$prefix/whisper-download"
  step="configure whisper.cpp"
  cmake -S "$whisper_src" -B "$prefix/build-whisper" "${whisper_options[@]}" -DWHISPER_BUILD_EXAMPLES=OFF \
    >"$prefix/configure-whisper.log" 2>&1 || fail "cmake configure failed (log: $prefix/configure-whisper.log)" "read the log"
  step="build whisper.cpp"
  log "building whisper.cpp's library against the cached ggml with $jobs jobs (first time only; about a minute)"
  cmake --build "$prefix/build-whisper" -j "$jobs" --target whisper >"$prefix/build-whisper.log" 2>&1 ||
    fail "build failed (log: $prefix/build-whisper.log)" "read the tail of the log; free memory/disk and rerun"
  step="install whisper.cpp"
  { cp -a "$prefix/build-whisper/bin/"libwhisper.so* "$prefix/lib/" && cp -f "$whisper_src/include/whisper.h" "$prefix/include/"; } ||
    fail "install failed" "check free disk space in $cache_root"
  sed -n 's/^project("whisper.cpp" VERSION \([0-9.]*\)).*/\1/p' "$whisper_src/CMakeLists.txt" >"$prefix/WHISPER_RELEASE"
  touch "$whisper_stamp"
  log "whisper.cpp $(cat "$prefix/WHISPER_RELEASE") ready in $prefix/lib"
fi
if [ "$with_tools" -eq 1 ] && [ ! -f "$whisper_tools_stamp" ]; then
  step="configure whisper.cpp with its tools"
  cmake -S "$whisper_src" -B "$prefix/build-whisper" "${whisper_options[@]}" -DWHISPER_BUILD_EXAMPLES=ON \
    >"$prefix/configure-whisper-tools.log" 2>&1 || fail "cmake configure failed (log: $prefix/configure-whisper-tools.log)" "read the log"
  step="build whisper-cli and whisper-bench"
  cmake --build "$prefix/build-whisper" -j "$jobs" --target whisper-cli whisper-bench >"$prefix/build-whisper-tools.log" 2>&1 ||
    fail "build failed (log: $prefix/build-whisper-tools.log)" "read the tail of the log"
  mkdir -p "$prefix/bin"
  cp -f "$prefix/build-whisper/bin/whisper-cli" "$prefix/build-whisper/bin/whisper-bench" "$prefix/bin/"
  touch "$whisper_tools_stamp"
  log "whisper-cli and whisper-bench ready in $prefix/bin"
fi

if [ "$with_tools" -eq 1 ] && [ ! -f "$tools_stamp" ]; then
  step="configure llama.cpp with its tools"
  cmake -S "$prefix/src" -B "$prefix/build" "${with_tools_args[@]}" >"$prefix/configure-tools.log" 2>&1 ||
    fail "cmake configure failed (log: $prefix/configure-tools.log)" "read the log"
  step="build llama-server and llama-bench"
  log "building llama-server and llama-bench with $jobs jobs (first time only; minutes)"
  cmake --build "$prefix/build" -j "$jobs" --target llama-server llama-bench >"$prefix/build-tools.log" 2>&1 ||
    fail "build failed (log: $prefix/build-tools.log)" "read the tail of the log; free memory/disk and rerun"
  mkdir -p "$prefix/bin"
  for b in llama-server llama-bench; do
    cp -f "$prefix/build/bin/$b" "$prefix/bin/$b"
  done
  # the tools' own shared libraries (libllama-server-impl.so and the like) sit beside libllama
  cp -a "$prefix/build/bin/"*.so* "$prefix/lib/"
  "$prefix/bin/llama-server" --version >/dev/null 2>&1 || fail "the built llama-server does not start" "read $prefix/build-tools.log"
  touch "$tools_stamp"
  log "llama-server and llama-bench ready in $prefix/bin"
fi
step=""
echo "$prefix"
