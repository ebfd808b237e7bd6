# Sourced by scripts/serve, scripts/test and scripts/upgrade-deps: virtual environments that hold
# exactly the versions of a lock file in requirements/.
#
# install_locked VENV LOCK: creates VENV when missing, installs every line of LOCK (each pinned
# and hashed) with --no-deps --require-hashes, so no resolver runs and a changed file on the
# registry is refused, then idverify itself (editable, built with the locked setuptools). A stamp
# of the lock and pyproject.toml skips the install when VENV already holds them.

install_locked() {
    local venv=$1 lock=$2 stamp
    [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
    stamp="$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$venv/.idverify-lock" 2>/dev/null)" != "$stamp" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            --no-deps --require-hashes -r "$lock"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            --no-deps --no-build-isolation -e .
        echo "$stamp" >"$venv/.idverify-lock"
    fi
}

# install_latest VENV: the newest versions pyproject.toml's ranges allow, resolved today.
install_latest() {
    local venv=$1
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade -e '.[dev]'
}
