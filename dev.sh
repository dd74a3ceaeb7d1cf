#!/usr/bin/env bash
# The two entry points of the README, for a fresh Debian 12 host, as root:
#   ./dev.sh run    set up, then run the daemon in the foreground with the example deployed
#   ./dev.sh test   set up, then the lint gate (ruff check, ruff format --check, mypy,
#                   import-linter),
#                   then the whole test suite (extra args go to pytest)
# Setting up installs Debian packages, then a virtualenv in .venv with scriptd and
# its dev tools. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"

install_debian_packages() {
    # gcc and python3-dev: python-prctl has no wheel and builds from source;
    # openssl: the notification tests make their TLS certificates with it;
    # e2fsprogs (mkfs.ext4, resize2fs) and util-linux (mount, losetup, unshare,
    # setpriv): workspace images and builds; chromium: the console's browser tests
    # (Playwright drives Debian's build, it downloads no browser); libsystemd-dev and
    # pkg-config: systemd-python (logs to journald) builds from source; systemd:
    # systemd-analyze checks the unit.
    local wanted=(libcap-dev libseccomp2 bubblewrap python3-venv curl gcc python3-dev openssl
                  e2fsprogs util-linux mount chromium libsystemd-dev pkg-config systemd)
    # Node may come from elsewhere than Debian: only ask apt for it when absent.
    command -v node >/dev/null 2>&1 || wanted+=(nodejs npm)
    local missing=()
    for pkg in "${wanted[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_virtualenv() {
    local py=${PYTHON:-python3}
    if [ ! -x .venv/bin/python ]; then
        echo "setup: creating .venv with $($py --version)"
        "$py" -m venv .venv
    fi
    local stamp=.venv/.scriptd-installed
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "setup: installing scriptd and its tools into .venv"
        .venv/bin/python -m pip install -q --upgrade pip uv
        .venv/bin/uv pip install -q --python .venv/bin/python -e '.[dev,bench,journal]'
        touch "$stamp"
    fi
}

lint() {
    echo "lint: ruff check, ruff format --check, mypy, import-linter (layer contracts)"
    .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy \
        && .venv/bin/lint-imports
}

run_tests() {
    # Under CI=true (set by .ci/run or the CI host) tests that lack root, a kernel
    # feature or a tool fail instead of skipping; locally they skip with the reason.
    if [ -n "${CI:-}" ]; then
        export CI
        echo "test: CI=$CI, missing requirements fail the tests"
    fi
    lint || { echo "test: the lint gate failed (output above)" >&2; return 1; }
    .venv/bin/python -m pytest "$@"
}

install_debian_packages
install_virtualenv
echo "setup: done"

case "${1:-setup}" in
    setup) ;;
    test) shift; run_tests "$@" ;;
    run) shift; exec .venv/bin/python -m daemon.cli.devrun "$@" ;;
    *) echo "usage: ./dev.sh [setup|run|test [pytest args]]" >&2; exit 2 ;;
esac
