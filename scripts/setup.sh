#!/usr/bin/env bash
# Fresh-machine setup for runnerctl: system tools, Docker Engine, cosign (pinned), the venv.
# Idempotent: every step checks first and does nothing when its work is already done.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${RUNNERCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runnerctl}"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

# cosign 2.5.0 from Debian's pool, pinned by sha256 (checked against trixie's Packages index).
COSIGN_DEB_URL="${COSIGN_DEB_URL:-http://deb.debian.org/debian/pool/main/c/cosign/cosign_2.5.0-2+b4_amd64.deb}"
COSIGN_DEB_SHA256="aef4fb6635710fd369ef73c07dde35540f45c877984e20f37aa11e181bb597c3"

# command -> Debian package that provides it
declare -A TOOLS=(
  [git]=git [debootstrap]=debootstrap [ssh]=openssh-client [ssh-keygen]=openssh-client
  [rsync]=rsync [curl]=curl [dpkg-deb]=dpkg [xz]=xz-utils [zstd]=zstd [ip]=iproute2
  [docker-registry]=docker-registry [pgrep]=procps
)

log() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "not root: cannot install $*"
    log "install these yourself (apt-get install -y $*) or run 'make' as root"
    exit 1
  fi
}

apt_install() {
  need_root "$@"
  # The stamp lives in our cache, which may outlive apt's own lists (a reused home on a new
  # machine): update whenever the lists are empty too.
  if [ ! -f "$CACHE/.apt-updated" ] || [ -n "$(find "$CACHE/.apt-updated" -mmin +360 2>/dev/null)" ] \
    || ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    log "apt-get update"
    apt-get update -qq >&2
    mkdir -p "$CACHE" && touch "$CACHE/.apt-updated"
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

system_tools() {
  local missing=() cmd
  for cmd in "${!TOOLS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/usr/bin/$cmd" ] || missing+=("${TOOLS[$cmd]}")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    # shellcheck disable=SC2046
    apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
  fi
  if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
}

docker_engine() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
  fi
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  need_root "a running Docker Engine (dockerd)"
  mkdir -p "$CACHE"
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    log "starting dockerd in the background (log: $CACHE/dockerd.log)"
    # containerd is started by dockerd itself when no system containerd answers.
    nohup dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null &
  fi
  local i
  for i in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then
      log "dockerd answers"
      return 0
    fi
    sleep 0.5
  done
  log "dockerd did not answer within 60 s; see $CACHE/dockerd.log"
  tail -n 20 "$CACHE/dockerd.log" >&2 || true
  exit 1
}

cosign_binary() {
  local dest="$CACHE/cosign/2.5.0/cosign"
  if [ -x "$dest" ]; then
    return 0
  fi
  local work deb
  mkdir -p "$CACHE/cosign/2.5.0" "$CACHE/downloads"
  deb="$CACHE/downloads/$(basename "$COSIGN_DEB_URL" | sed 's/%2B/+/g')"
  if [ ! -f "$deb" ] || ! echo "$COSIGN_DEB_SHA256  $deb" | sha256sum -c --status -; then
    log "fetching cosign: $COSIGN_DEB_URL"
    curl -fsSL --retry 3 -o "$deb.part" "$COSIGN_DEB_URL"
    if ! echo "$COSIGN_DEB_SHA256  $deb.part" | sha256sum -c --status -; then
      log "cosign .deb checksum mismatch: expected $COSIGN_DEB_SHA256, got $(sha256sum "$deb.part" | cut -d' ' -f1)"
      rm -f "$deb.part"
      exit 1
    fi
    mv "$deb.part" "$deb"
  fi
  work="$(mktemp -d)"
  dpkg-deb -x "$deb" "$work"
  install -m 0755 "$work/usr/bin/cosign" "$dest.part"
  mv "$dest.part" "$dest"
  rm -rf "$work"
  log "cosign 2.5.0 at $dest"
}

python_venv() {
  local stamp="$VENV/.runnerctl-installed" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/runnerctl" ]; then
    return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  log "installing runnerctl with its dev dependencies into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" >&2
  echo "$want" >"$stamp"
}

main() {
  # RUNNERCTL_SETUP=venv: only the venv (CI jobs that lint, unit-test or build in a job image,
  # where Docker Engine and the system tools are neither needed nor installable).
  if [ "${RUNNERCTL_SETUP:-all}" = "venv" ]; then
    python_venv
    return 0
  fi
  system_tools
  docker_engine
  cosign_binary
  python_venv
  # Later steps (tests, demo) find cosign here.
  ln -sf "$CACHE/cosign/2.5.0/cosign" "$VENV/bin/cosign"
}

main "$@"
