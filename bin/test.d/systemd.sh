# Sourced by bin/test: systemd-analyze, which checks deploy/systemd's units (tests/deploy/test_systemd.py).
# Only the tool is needed; the tests start no unit.
need_apt systemd-analyze --no-install-recommends systemd
