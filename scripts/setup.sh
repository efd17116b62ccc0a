#!/usr/bin/env bash
# Idempotent host set-up for kwb: Debian packages, the liburing source package, a virtualenv.
# Fast when everything is already there: each step checks before it acts.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${KWB_VENV:-$here/.venv}
pkgfile=$here/ci/debian-packages.txt

need=()
while read -r spec; do
    spec=${spec%%#*}; spec=${spec// /}
    [ -n "$spec" ] || continue
    name=${spec%%=*}
    want=${spec#*=}; [ "$want" = "$spec" ] && want=""
    have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
    case "$have" in
        "install ok installed "*) [ -z "$want" ] || [ "${have##* }" = "$want" ] || need+=("$spec") ;;
        *) need+=("$spec") ;;
    esac
done < "$pkgfile"

# liburing's test suite comes from Debian's source package, which needs a deb-src entry.
srclist=/etc/apt/sources.list.d/kwb-deb-src.sources
added_src=0
if [ ! -e "$srclist" ]; then
    cat > "$srclist" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    added_src=1
fi

if [ ${#need[@]} -gt 0 ] || [ $added_src = 1 ]; then
    echo "setup: apt-get install ${need[*]:-(source index only)}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 900 apt-get update -qq
    [ ${#need[@]} -eq 0 ] || timeout 1800 apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

stamp=$venv/.kwb-installed
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -e "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    echo "setup: pip install -e .[dev] into $venv"
    timeout 900 "$venv/bin/pip" install -q --upgrade pip
    timeout 1800 "$venv/bin/pip" install -q -e "$here[dev]"
    touch "$stamp"
fi
# gitlab-ci-local runs ci/gitlab-ci.yml's jobs on this host (the CI-engine test); pinned, and kept in
# the checkout (.tools/), never installed globally. 4.50.0 is the last release that runs on Node 20.
gcl_version=4.50.0
gcl=$here/.tools/gitlab-ci-local
if command -v npm >/dev/null 2>&1; then
    have_gcl=$("$gcl/node_modules/.bin/gitlab-ci-local" --version 2>/dev/null || true)
    if [ "$have_gcl" != "$gcl_version" ]; then
        echo "setup: npm install gitlab-ci-local@$gcl_version into $gcl"
        mkdir -p "$gcl"
        timeout 600 npm install --prefix "$gcl" --no-audit --no-fund --silent "gitlab-ci-local@$gcl_version"
    fi
else
    echo "setup: npm not found: gitlab-ci-local (the CI-engine test) not installed"
fi
# kwb's isolated guest root (a minimal Debian tree, mmdebstrap'ed once per cache; ~1.5 min the first time,
# instant afterwards). Not needed when guests boot on the host's root (KWB_GUEST_ROOT=host).
if [ "${KWB_GUEST_ROOT:-isolated}" != host ]; then
    timeout 1800 "$venv/bin/kwb" guest-image --base-only >/dev/null
fi
echo "setup: ok"
