# Sourced by setup.sh and test.sh: this checkout's own virtual environment (.venv), first on
# PATH, so a second clone on the same machine never re-points the `choreo` command or the
# services' interpreter at itself. Created on first use; reused after.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || {
        echo "cannot create .venv: install Debian's python3-venv (apt-get install -y python3-venv)" >&2
        exit 1
    }
fi
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
python -m pip install --disable-pip-version-check -q -e '.[test]'
