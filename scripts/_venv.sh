# Sourced by scripts/serve, scripts/test and scripts/upgrade-deps: virtual environments that hold
# exactly the versions of a lock file in requirements/.
#
# install_locked VENV LOCK [SUPERSET...]: creates VENV when missing, installs every line of LOCK
# (each pinned and hashed) with --no-deps --require-hashes, so no resolver runs and a changed file
# on the registry is refused, then idverify itself (editable, built with the locked setuptools). A
# stamp of the lock and pyproject.toml skips the install when VENV already holds them, or holds a
# SUPERSET lock: one that pins every package of LOCK at the same version, as dev.txt does
# runtime.txt's (scripts/upgrade-deps compiles it with -c runtime.txt; tests/unit/test_venv_stamp.py
# checks it). So scripts/serve on the venv scripts/test made starts without pip (~6 s), and
# scripts/test after scripts/serve does not reinstall.

lock_stamp() {
    cat "$1" pyproject.toml | sha256sum | cut -d' ' -f1
}

install_locked() {
    local venv=$1 lock=$2 held accepted
    shift 2
    [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
    held="$(cat "$venv/.idverify-lock" 2>/dev/null || true)"
    for accepted in "$lock" "$@"; do
        [ "$held" = "$(lock_stamp "$accepted")" ] && return 0
    done
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        --no-deps --require-hashes -r "$lock"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        --no-deps --no-build-isolation -e .
    lock_stamp "$lock" >"$venv/.idverify-lock"
}

# install_latest VENV: the newest versions pyproject.toml's ranges allow, resolved today.
install_latest() {
    local venv=$1
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade -e '.[dev]'
}
