# Sourced by bin/serve and bin/test: a virtual environment with the pinned requirements.
VENV="${VENV:-.venv}"
REQUIREMENTS="${REQUIREMENTS:-requirements.txt}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat "$REQUIREMENTS" requirements.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  touch "$stamp"
fi
