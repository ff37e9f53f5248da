#!/usr/bin/env bash
# Builds the Asterisk 20 of the real-PBX test tier once, outside the work tree, and installs
# the Debian packages it and its SIPp callers need. Idempotent and non-interactive: a machine
# that has the build is left alone; a machine without the source is told so and left alone
# (the tier then reports itself skipped with that reason).
#
#   ASTERISK_SRC    the source tarball (default: ../shared/asterisk/src/asterisk-20.tar.gz
#                   from the project root)
#   ASTERISK_HOME   where the build lives (default: /var/cache/yijing/asterisk-20 when
#                   writable, else ${XDG_CACHE_HOME:-~/.cache}/yijing/asterisk-20)
#
# The install is complete when "$ASTERISK_HOME/.built-from" holds the tarball's sha256;
# anything else there is a half build and is started over. Prints the install path last.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="${ASTERISK_SRC:-$root/../shared/asterisk/src/asterisk-20.tar.gz}"
if [ -z "${ASTERISK_HOME:-}" ]; then
  if mkdir -p /var/cache/yijing 2>/dev/null && [ -w /var/cache/yijing ]; then
    ASTERISK_HOME=/var/cache/yijing/asterisk-20
  else
    ASTERISK_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/yijing/asterisk-20"
  fi
fi
home="$ASTERISK_HOME"
export CI=true DEBIAN_FRONTEND=noninteractive

need=()
for pkg in build-essential libedit-dev libjansson-dev libxml2-dev uuid-dev libsqlite3-dev \
  libssl-dev sip-tester sox; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  # several worktrees may run this at once: apt's own lock makes the second one wait
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi

if [ ! -r "$src" ]; then
  echo "no Asterisk source at $src: the asterisk test tier will be skipped" >&2
  exit 0
fi

sum="$(sha256sum "$src" | cut -d' ' -f1)"
if [ "$(cat "$home/.built-from" 2>/dev/null)" = "$sum" ] && [ -x "$home/sbin/asterisk" ]; then
  echo "$home"
  exit 0
fi

mkdir -p "$(dirname "$home")"
# one build at a time per machine: the others wait for it and then find it done
exec 9>"$home.lock"
flock 9
if [ "$(cat "$home/.built-from" 2>/dev/null)" = "$sum" ] && [ -x "$home/sbin/asterisk" ]; then
  echo "$home"
  exit 0
fi

echo "building Asterisk 20 from $src into $home (about 6 minutes on 2 cores)"
work="$(mktemp -d "${TMPDIR:-/tmp}/yijing-asterisk-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$src" -C "$work"
tree="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)"
log="$work/build.log"
rm -rf "$home"
(
  cd "$tree"
  # gitignored upstream, so missing from a snapshot; the link step needs it
  [ -e default.exports ] || echo '{ local: *; };' > default.exports
  ./configure --prefix="$home" --without-pjproject --with-jansson
  make menuselect.makeopts
  # the sound packages are downloads, which these machines cannot reach
  menuselect/menuselect --enable chan_sip --disable CORE-SOUNDS-EN-GSM \
    --disable MOH-OPSOUND-WAV menuselect.makeopts
  make -j"$(nproc)"
  make install
) >"$log" 2>&1 || {
  echo "Asterisk build failed; the last lines of its log:" >&2
  tail -n 40 "$log" >&2
  exit 1
}
[ -x "$home/sbin/asterisk" ] || { echo "no $home/sbin/asterisk after the build" >&2; exit 1; }
echo "$sum" > "$home/.built-from"
echo "$home"
