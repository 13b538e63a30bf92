#!/usr/bin/env bash
# Back up the study database while the app runs.
#   deploy/backup.sh DATABASE_URL OUT_FILE
# PostgreSQL: pg_dump custom format (compressed, restorable table by table).
# SQLite: the online backup API (a consistent copy even while the app writes).
# The file appears under OUT_FILE only when complete.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 DATABASE_URL OUT_FILE   (postgresql://user@host/db or sqlite:////abs/path.sqlite)" >&2
    exit 2
fi
url="$1"
out="$2"
tmp="$(dirname "$out")/.$(basename "$out").partial"
trap 'rm -f "$tmp"' EXIT
case "$url" in
    postgres://*|postgresql://*|postgresql+psycopg://*)
        pg_dump --format=custom --no-owner --file "$tmp" "${url/postgresql+psycopg:/postgresql:}"
        ;;
    sqlite:///*)
        python3 "$(dirname "$0")/sqlite_copy.py" "${url#sqlite:///}" "$tmp"
        ;;
    *)
        echo "$0: DATABASE_URL must start with postgresql:// or sqlite:///, got '$url'" >&2
        exit 2
        ;;
esac
mv "$tmp" "$out"
trap - EXIT
echo "backed up to $out"
