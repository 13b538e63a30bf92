#!/usr/bin/env bash
# Restore a backup made by deploy/backup.sh into a database.
#   deploy/restore.sh BACKUP_FILE DATABASE_URL
# PostgreSQL: pg_restore into the (existing, preferably empty) database; objects
# that exist are dropped first. SQLite: the file is written to a temporary name
# and renamed over the target. Stop the app (or point it elsewhere) first.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 BACKUP_FILE DATABASE_URL" >&2
    exit 2
fi
backup="$1"
url="$2"
[ -f "$backup" ] || { echo "$0: no backup file '$backup'" >&2; exit 2; }
case "$url" in
    postgres://*|postgresql://*|postgresql+psycopg://*)
        pg_restore --clean --if-exists --no-owner --exit-on-error \
            --dbname "${url/postgresql+psycopg:/postgresql:}" "$backup"
        ;;
    sqlite:///*)
        target="${url#sqlite:///}"
        python3 "$(dirname "$0")/sqlite_copy.py" "$backup" "$target.restoring"
        mv "$target.restoring" "$target"
        ;;
    *)
        echo "$0: DATABASE_URL must start with postgresql:// or sqlite:///, got '$url'" >&2
        exit 2
        ;;
esac
echo "restored $backup into the database"
