# Sourced by bin/test: a real Prometheus server and promtool for tests/metrics (Debian's package).
# Only the binaries are needed; the tests start their own server on a free port with a private
# data directory, so the node exporter it recommends is left out.
need_apt prometheus --no-install-recommends prometheus
