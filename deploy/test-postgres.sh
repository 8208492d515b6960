#!/bin/sh
# Makes sure the PostgreSQL the tests use answers at 127.0.0.1:5432 with trust auth and a
# database `test` (the project's machines have one running). On a fresh Debian machine
# it installs the `postgresql` package, starts its cluster, and creates the database.
set -eu
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt-get update
    apt-get install -y --no-install-recommends postgresql
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q .; then
    pg_createcluster "$version" main
fi
cluster=$(pg_lsclusters -h | head -1)
set -- $cluster
hba=$(su postgres -c "psql -tAc 'SHOW hba_file'" 2>/dev/null || echo "/etc/postgresql/$1/$2/pg_hba.conf")
if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
fi
pg_ctlcluster "$1" "$2" restart || pg_ctlcluster "$1" "$2" start
for _ in 1 2 3 4 5 6 7 8 9 10; do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 1
done
su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'test'\"" | grep -q 1 \
    || su postgres -c "createdb test"
pg_isready -h 127.0.0.1 -p 5432
