#!/bin/sh
# A cron job made singleton with the CLI: the crontab line is
#   */5 * * * * locksmith run sync-invoices --wait 0 --backend "$REDIS_URL" -- /usr/local/bin/sync-invoices
# A run that finds the previous one still going exits 75 at once instead of piling up.
# Here: two overlapping runs of a 1 s job; exactly one runs, the other exits 75.
set -eu
backend="${LOCKSMITH_BACKEND:-file:${LOCK_DIR:-/tmp/locksmith-example-$(id -u)}}"
locksmith run sync-invoices --wait 0 --backend "$backend" --fence-env FENCE -- sh -c 'echo "syncing (fence $FENCE)"; sleep 1' &
sleep 0.3
set +e
locksmith run sync-invoices --wait 0 --backend "$backend" -- sh -c 'echo "second run: must not happen"'
code=$?
set -e
wait
echo "overlapping run exited $code"
test "$code" -eq 75
