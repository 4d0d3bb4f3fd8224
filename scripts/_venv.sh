# Sourced by scripts/test and scripts/demo: make .venv (if missing) and install lakeport into it.
# Usage: lakeport_venv EXTRAS   (e.g. "[test]" or "")
# Reinstalls only when pyproject.toml changed since the last install.

lakeport_venv() {
    local extras="$1" python="${PYTHON:-python3}"
    if ! command -v "$python" >/dev/null 2>&1; then
        echo "error: $python not found: install Python 3.11 or newer (or set PYTHON)" >&2
        return 1
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "error: lakeport needs Python 3.11 or newer, $python is $("$python" -V 2>&1)" >&2
        return 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "creating .venv with $("$python" -V 2>&1)" >&2
        "$python" -m venv .venv
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    fi
    local stamp=".venv/.lakeport-installed${extras}"
    local want
    want="$(cat pyproject.toml scripts/constraints.txt)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "installing lakeport${extras} into .venv" >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check \
            -c scripts/constraints.txt -e ".${extras}"
        printf '%s' "$want" >"$stamp"
    fi
}
