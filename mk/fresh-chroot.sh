#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The README's two commands on a fresh machine, without docker: a minimal
# chroot (debootstrap: essential packages, apt, git and make, nothing else),
# a clean clone of the current branch in /root/memctl, then `make demo` and
# `make test` as root with nothing else typed. The apt sources carry `main`
# only, in the style the distribution's container image uses (Debian 12 and
# Ubuntu 22.04 one-line, Debian 13 and Ubuntu 24.04 deb822), so enabling the
# other components is part of the test. Needs root and debootstrap; about
# 8 GB under DIR. Logs: DIR.demo.log, DIR.test.log.
# usage: sudo sh mk/fresh-chroot.sh debian:12|debian:13|ubuntu:22.04|ubuntu:24.04 DIR
set -eu
dist=$1 R=$2
case $dist in
debian:12) suite=bookworm ;;
debian:13) suite=trixie ;;
ubuntu:22.04) suite=jammy ;;
ubuntu:24.04) suite=noble ;;
*) echo "usage: sh mk/fresh-chroot.sh debian:12|debian:13|ubuntu:22.04|ubuntu:24.04 DIR" >&2; exit 2 ;;
esac
case $dist in
debian:*) mirror=http://deb.debian.org/debian script=sid
	security=http://deb.debian.org/debian-security sec_suite=$suite-security
	keyring=/usr/share/keyrings/debian-archive-keyring.gpg ;;
ubuntu:*) mirror=http://archive.ubuntu.com/ubuntu script=gutsy
	security=http://security.ubuntu.com/ubuntu sec_suite=$suite-security
	keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg ;;
esac
src=$(git rev-parse --show-toplevel)
branch=$(git rev-parse --abbrev-ref HEAD)

# Debootstrap checks signatures where the host has the keyring (Debian's
# always; Ubuntu's only if ubuntu-keyring is installed); apt inside the
# chroot always does.
check=""
[ -f "$keyring" ] || check=--no-check-gpg
[ -d "$R/usr" ] || debootstrap $check --variant=minbase --include=git,make \
	"$suite" "$R" "$mirror" "/usr/share/debootstrap/scripts/$script"

if [ "$dist" = debian:12 ] || [ "$dist" = ubuntu:22.04 ]; then
	printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s main\n' \
		"$mirror" "$suite" "$mirror" "$suite" "$security" "$sec_suite" \
		>"$R/etc/apt/sources.list"
else
	echo "# moved to /etc/apt/sources.list.d/" >"$R/etc/apt/sources.list"
	printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n\nTypes: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
		"$mirror" "$suite" "$suite" "$keyring" "$security" "$sec_suite" "$keyring" \
		>"$R/etc/apt/sources.list.d/${dist%%:*}.sources"
fi
cp /etc/resolv.conf "$R/etc/resolv.conf"
rm -rf "$R/root/memctl"
git clone -q -b "$branch" "$src" "$R/root/memctl"

mount -t proc proc "$R/proc"
mkdir -p "$R/dev/shm" && mount -t tmpfs shm "$R/dev/shm"
trap 'umount "$R/dev/shm" "$R/proc"' EXIT
run() {
	chroot "$R" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		sh -c "cd /root/memctl && make $1" >"$R.$1.log" 2>&1
}
st=0
run demo && echo "$dist make demo: passed" || { st=1; echo "$dist make demo: FAILED ($R.demo.log)"; }
if run test; then rc=0; else rc=$?; fi
echo "$dist make test: exit $rc, $(tail -n 1 "$R.test.log")"
[ $rc -eq 0 ] || st=1
exit $st
