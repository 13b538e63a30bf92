#!/usr/bin/env bash
# Install the Debian packages the tests drive for real when they are missing:
# chromium (browser tests; Playwright's own browser download cannot work offline),
# nginx (the production-stack test) and R with lme4 (the maximum-likelihood GLMM). Only root can apt-get; others get a hint
# and those tests skip locally (in CI, with CI=true, they fail instead).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
Rscript -e 'quit(status = !requireNamespace("lme4", quietly = TRUE))' >/dev/null 2>&1 || missing+=(r-cran-lme4)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "not installed: ${missing[*]}; run 'sudo apt-get install ${missing[*]}' to enable their tests." >&2
    exit 0
fi
echo "installing Debian's ${missing[*]} for the tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
