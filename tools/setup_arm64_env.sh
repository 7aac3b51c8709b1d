#!/usr/bin/env bash
# An emulated arm64 Python for the bundle consumer check (tools/bundle_consumer.py arm64), made once
# and reused: a Debian bookworm arm64 userland (python3.11 and its libraries) plus the aarch64
# wheels of ai-edge-litert 2.3.0, numpy and pillow, run by qemu-aarch64-static (user mode, no
# binfmt_misc needed, no chroot):
#   qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11   with PYTHONPATH=ROOT/opt/kseg-site
# `debootstrap --foreign` only downloads and unpacks the .debs (the second, emulated stage is not
# needed); every .deb it fetched is unpacked with dpkg-deb, the wheels are unzipped (no pip runs
# under emulation). LiteRT's CPU detection (cpuinfo) crashes on an x86 /proc/cpuinfo: ROOT/proc/
# cpuinfo holds an arm64 one (Cortex-A76 lines, one per host core), which qemu's -L prefix serves
# in place of the host file, so no bind mount and no root is needed to run.
# Usage: tools/setup_arm64_env.sh   (prints nothing when the cached root is ready)
# Env:   KSEG_ARM64_ROOT    (default /tmp/kseg-arm64-root)
#        KSEG_ARM64_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#        KSEG_VENV_PYTHON   host Python whose pip downloads the wheels (default python3.11)
# Exit:  0 ready; 3 cannot be made or run here (the reason is on stdout as one line: not root, no
#        apt-get, qemu cannot run arm64 programs); 1 set-up failed.
set -euo pipefail
ROOT=${KSEG_ARM64_ROOT:-/tmp/kseg-arm64-root}
MIRROR=${KSEG_ARM64_MIRROR:-http://deb.debian.org/debian}
PY=${KSEG_VENV_PYTHON:-python3.11}
SITE=/opt/kseg-site
WHEELS=("ai-edge-litert==2.3.0" "numpy>=1.26,<3" "pillow>=10")
CHECK="import numpy, PIL, ai_edge_litert.interpreter"

MARK="$ROOT/.kseg-arm64-ready"  # holds the wheel list; written once the emulated imports worked

imports() {  # DIR: the emulated python in DIR imports numpy, PIL and ai_edge_litert
  (cd / && PYTHONPATH="$1$SITE" qemu-aarch64-static -L "$1" "$1/usr/bin/python3.11" -c "$CHECK") \
    >/dev/null 2>&1
}
# an emulated import takes 5 to 40 s on a busy machine: reuse is judged by the marker
ready() {
  command -v qemu-aarch64-static >/dev/null && [[ -x "$ROOT/usr/bin/python3.11" ]] &&
    [[ "$(cat "$MARK" 2>/dev/null)" == "${WHEELS[*]}" ]]
}
cannot() { echo "$1"; exit 3; }

if ready; then exit 0; fi
[[ "$(id -u)" == 0 ]] || cannot "not root (building the arm64 root needs apt-get and debootstrap as root)"
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || cannot "no apt-get to install ${missing[*]}"
  echo "== installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

started=$(date +%s)
tmp="$ROOT.tmp"
rm -rf "$tmp"
echo "== debootstrap arm64 bookworm (download + unpack, no emulated second stage) -> $ROOT" >&2
debootstrap --arch=arm64 --foreign --variant=minbase \
  --include=python3.11-minimal,libpython3.11-stdlib bookworm "$tmp" "$MIRROR" >"$tmp.log" 2>&1 || {
  echo "error: debootstrap failed; see $tmp.log" >&2; tail -3 "$tmp.log" >&2; exit 1; }
# the first stage unpacks only the essential packages; unpack all (python3.11 among them), keeping
# the merged-/usr symlinks (/lib -> usr/lib) that a plain `dpkg-deb -x` would replace
for deb in "$tmp"/var/cache/apt/archives/*.deb; do
  dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$tmp"
done
rm -f "$tmp"/var/cache/apt/archives/*.deb
qemu-aarch64-static -L "$tmp" "$tmp/usr/bin/true" 2>/dev/null ||
  cannot "qemu-aarch64-static cannot run arm64 programs here"

echo "== aarch64 wheels: ${WHEELS[*]}" >&2
wheels="$tmp.wheels"
rm -rf "$wheels"
"$PY" -m pip download -q --disable-pip-version-check --dest "$wheels" \
  --platform manylinux_2_27_aarch64 --python-version 3.11 --implementation cp --abi cp311 \
  --only-binary=:all: "${WHEELS[@]}" 2>"$tmp.pip.log" || {
  echo "error: pip download of the aarch64 wheels failed; see $tmp.pip.log" >&2; exit 1; }
mkdir -p "$tmp$SITE"
for w in "$wheels"/*.whl; do "$PY" -m zipfile -e "$w" "$tmp$SITE"; done
rm -rf "$wheels"

# debootstrap leaves proc as a link to the host's /proc; a real folder with only cpuinfo in it
# lets qemu serve that file and every other /proc path from the host
rm -rf "$tmp/proc"
mkdir "$tmp/proc"
for ((i = 0; i < $(nproc); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n' "$i"
done >"$tmp/proc/cpuinfo"

imports "$tmp" || {
  echo "error: $tmp: the emulated python cannot import numpy, PIL and ai_edge_litert" >&2; exit 1; }
echo "${WHEELS[*]}" >"$tmp/.kseg-arm64-ready"
rm -rf "$ROOT"
mv "$tmp" "$ROOT"
rm -f "$tmp.log" "$tmp.pip.log"
echo "== arm64 root ready in $(($(date +%s) - started)) s ($(du -sh "$ROOT" | cut -f1))" >&2
