#!/usr/bin/env bash
# Builds the .deb from a configured and built tree ($1) and checks what it
# holds and needs: the files `cmake --install` puts in place, a systemd unit
# that reloads by SIGHUP and runs as its own user, the configuration as a
# conffile, the Debian runtime libraries as dependencies; then that the
# packaged binary, manual page and configuration work as unpacked.
set -euo pipefail
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Where the tree was configured to install (the .deb uses the same prefix).
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
etc=$prefix/etc
[ "$prefix" = /usr ] && etc=/etc

(cd "$build" && cpack -G DEB -B "$work" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/pgshift_*_"$(dpkg --print-architecture)".deb) || fail "no package in $(ls "$work")"
echo "built $(basename "$deb")"

contents=$(dpkg-deb -c "$deb")
for f in "$prefix/bin/pgshift" "$prefix/share/man/man1/pgshift.1.gz" "$etc/pgshift/pgshift.toml" \
    "$prefix/lib/systemd/system/pgshift.service" "$prefix/share/doc/pgshift/README.md" \
    "$prefix/share/doc/pgshift/runbook.md" "$prefix/share/doc/pgshift/grafana/pgshift-dashboard.json"; do
  grep -q " \.$f\$" <<<"$contents" || fail "$f is not in the package: $contents"
done
# The configuration holds passwords: not for every user to read.
grep -q "^-rw-r----- .* \.$etc/pgshift/pgshift.toml\$" <<<"$contents" ||
  fail "the configuration's mode: $(grep pgshift.toml <<<"$contents")"

info=$(dpkg-deb -I "$deb")
depends=$(grep '^ Depends:' <<<"$info") || fail "no Depends: $info"
for lib in adduser libc6 libstdc++6 libpq5 libssl3 libtomlplusplus3 libpg-query libabsl; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib: $depends"
done
# Only a tree built with the sanitizers (the test build) needs their runtimes.
if grep -q '^PGSHIFT_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
  grep -q libasan <<<"$depends" || fail "a sanitized build without libasan in Depends: $depends"
elif grep -qE 'libasan|libubsan' <<<"$depends"; then
  fail "a release build depends on the sanitizers' runtimes: $depends"
fi
grep -q '^ Package: pgshift$' <<<"$info" || fail "package name: $info"
grep -q 'postinst' <<<"$info" || fail "no postinst: $info"
dpkg-deb -e "$deb" "$work/control"
grep -qx "$etc/pgshift/pgshift.toml" "$work/control/conffiles" || fail "the configuration is not a conffile"
grep -q 'adduser --system --group' "$work/control/postinst" || fail "postinst makes no user"
grep -q 'deb-systemd-invoke stop pgshift.service' "$work/control/prerm" || fail "prerm leaves it running"
for script in postinst prerm postrm; do
  sh -n "$work/control/$script" || fail "$script is not valid sh"
done

dpkg-deb -x "$deb" "$work/root"
unit="$work/root$prefix/lib/systemd/system/pgshift.service"
for line in "ExecStart=$prefix/bin/pgshift serve --config $etc/pgshift/pgshift.toml" \
    'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure' 'LimitNOFILE=65536' \
    'User=pgshift' 'WantedBy=multi-user.target'; do
  grep -qxF "$line" "$unit" || fail "the unit lacks \"$line\": $(cat "$unit")"
done
# (Captured first: grep -q stops reading, and pipefail would count that.)
help=$("$work/root$prefix/bin/pgshift" --help)
grep -q 'pgshift plan --config FILE' <<<"$help" || fail "pgshift --help: $help"
"$work/root$prefix/bin/pgshift" check-config --config "$work/root$etc/pgshift/pgshift.toml" ||
  fail "the packaged configuration is not valid"
page="$work/root$prefix/share/man/man1/pgshift.1.gz"
grep -q '^\.TH PGSHIFT 1' <<<"$(zcat "$page")" || fail "man page header"
if command -v man >/dev/null; then
  grep -q 'pgshift serve --config FILE' <<<"$(man -l "$page" 2>/dev/null)" ||
    fail "man cannot render the page"
fi
echo "package ok: $(grep -c . <<<"$contents") entries; $depends"
