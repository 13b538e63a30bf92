#!/usr/bin/env bash
# Fill in deploy/nginx/study.conf's placeholders and print the result.
#   deploy/render-nginx.sh SERVER_NAME LISTEN APP STUDIES [TLS_CERT TLS_KEY] > /etc/nginx/conf.d/study.conf
# e.g.  deploy/render-nginx.sh study.example.org "443 ssl" 127.0.0.1:8000 /srv/studies \
#           /etc/letsencrypt/live/study.example.org/fullchain.pem /etc/letsencrypt/live/study.example.org/privkey.pem
set -euo pipefail
if [ $# -ne 4 ] && [ $# -ne 6 ]; then
    echo "usage: $0 SERVER_NAME LISTEN APP STUDIES [TLS_CERT TLS_KEY]" >&2
    exit 2
fi
cert="" key="" hsts=""
if [ $# -eq 6 ]; then
    cert="ssl_certificate $5;"
    key="ssl_certificate_key $6;"
    # Browsers then refuse plain HTTP to this host for a year: no downgrade on a bad network.
    hsts='add_header Strict-Transport-Security "max-age=31536000" always;'
fi
here="$(cd "$(dirname "$0")" && pwd)"
sed -e "s|@SERVER_NAME@|$1|g" -e "s|@LISTEN@|$2|g" -e "s|@APP@|$3|g" -e "s|@STUDIES@|$4|g" \
    -e "s|@TLS_CERT@|$cert|g" -e "s|@TLS_KEY@|$key|g" -e "s|@HSTS@|$hsts|g" "$here/nginx/study.conf"
