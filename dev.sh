#!/usr/bin/env bash
# The two entry points of the README, for a fresh Debian 12 host, as root:
#   ./dev.sh run    set up, then run the daemon in the foreground with the example deployed
#   ./dev.sh test   set up, then the lint gate (ruff check, ruff format --check, mypy,
#                   import-linter),
#                   then the whole test suite in 3 processes (extra args go to pytest)
# Setting up installs Debian packages, then a virtualenv in .venv with scriptd and
# its dev tools, then compiles the egress relay with mypyc. Safe to run again: each
# step is skipped when already done.
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

default_python() {
    # The distribution's interpreter when it is 3.11 or newer, else python3 on PATH.
    # Debian's is built with profile-guided and link-time optimisation, its executable
    # linked statically; a self-built one (pyenv's default build: neither, libpython
    # shared) costs the daemon 1.2 x the CPU per call (README, "Running under
    # systemd", the interpreter).
    if /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo /usr/bin/python3
    else
        echo python3
    fi
}

install_virtualenv() {
    local py=${PYTHON:-$(default_python)}
    if [ ! -x .venv/bin/python ]; then
        echo "setup: creating .venv with $py ($($py --version))"
        "$py" -m venv .venv
    else
        local made_with wanted
        made_with=$(sed -n 's/^executable = //p' .venv/pyvenv.cfg 2>/dev/null)
        wanted=$("$py" -c 'import os, sys; print(os.path.realpath(sys.executable))')
        if [ -n "$made_with" ] && [ "$(realpath "$made_with")" != "$wanted" ]; then
            echo "setup: note: .venv runs on $made_with, not on $wanted;" \
                 "to change: rm -r .venv && ./dev.sh setup" >&2
        fi
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
    # Test files run side by side in SCRIPTD_TEST_WORKERS processes (pytest-xdist), each
    # file whole in one of them so its module-scoped daemon starts once: most of a
    # test's time is spent waiting on daemons, builds and replicas, not on a CPU.
    # SCRIPTD_TEST_WORKERS=0 (or `-n 0`) runs everything in one process. Whole files in
    # collection order (tests/conftest.py puts the longest first), not the most tests first.
    # A short temp root: each worker's folders lie one level deeper (popen-gwN), and a
    # daemon's unix sockets below its state dir must fit in 108 bytes. Removed when the
    # run passes (on one file system only: never below a workspace image left mounted).
    local base status=0
    base=$(mktemp -d /tmp/sdt.XXXXXX)
    .venv/bin/python -m pytest -n "${SCRIPTD_TEST_WORKERS:-3}" --dist loadfile \
        --no-loadscope-reorder --basetemp "$base" "$@" || status=$?
    if [ "$status" -eq 0 ]; then rm -rf --one-file-system "$base"; else
        echo "test: the tests' folders are kept in $base" >&2; fi
    return "$status"
}

compile_relay() {
    # The egress relay compiled with mypyc (README, "The egress relay, compiled"): built
    # again only when a source changed; if the build fails the relay runs as Python.
    .venv/bin/python -m daemon.core.compiled --build \
        || echo "setup: the egress relay runs as Python (the build's error above)" >&2
}

install_debian_packages
install_virtualenv
compile_relay
echo "setup: done"

case "${1:-setup}" in
    setup) ;;
    test) shift; run_tests "$@" ;;
    run) shift; exec .venv/bin/python -m daemon.cli.devrun "$@" ;;
    *) echo "usage: ./dev.sh [setup|run|test [pytest args]]" >&2; exit 2 ;;
esac
