#!/bin/sh
# The image's entrypoint: apply migrations (one node at a time, deploy/migrate.py), then run the
# command, realtime_serve by default. exec keeps the server as PID 1's direct replacement, so the
# SIGTERM that `docker stop` and Kubernetes send reaches it and it drains.
# REALTIME_MIGRATE=false skips the migrations (a read-only database user, a separate migration job).
set -eu
case "${REALTIME_MIGRATE:-true}" in
  false | 0 | no | off) ;;
  *) python /app/deploy/migrate.py ;;
esac
exec "$@"
