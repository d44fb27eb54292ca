# Sourced by bin/test: Debian's PostgreSQL server binaries for the PostgreSQL pass. Only the binaries
# are needed; tests/postgres.py starts a private server on a free port in a temporary directory (the
# cluster the package may create on 5432 is not used). initdb is not on PATH: look in the versioned
# directory (the literal pattern, when nothing matches, is a missing command, so need_apt installs).
initdb=(/usr/lib/postgresql/*/bin/initdb)
need_apt "${initdb[-1]}" --no-install-recommends postgresql
