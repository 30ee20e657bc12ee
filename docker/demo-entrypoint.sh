#!/bin/sh
# Entrypoint of the demo client container: make sure there is an API key, then run the command.
# With VL2V_API_KEY empty it reuses the key saved in the work volume if the vendor still
# accepts it, else creates one through the admin API (POST /v1/admin/keys) with
# VENDOR_ADMIN_TOKEN and saves it: a demo shortcut; a real client is handed its key.
set -eu
if [ -z "${VL2V_API_KEY:-}" ]; then
    VL2V_API_KEY=$(python3 - <<'PY'
import json, os, sys, urllib.error, urllib.request
from pathlib import Path

base = os.environ["VL2V_ENDPOINT"].rstrip("/")
saved = Path(os.environ.get("VL2V_DEMO_KEY_FILE", "/work/demo_api_key"))


def call(path, token, body=None):
    req = urllib.request.Request(
        base + path, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


if saved.is_file():
    key = saved.read_text().strip()
    try:
        remaining = call("/v1/usage?limit=1", key)["budget"]["remaining"]
    except urllib.error.HTTPError:  # the vendor's ledger no longer knows it
        remaining = 0
    if remaining > 0:
        print(f"demo-entrypoint: reusing the key in {saved} ({remaining} queries left)",
              file=sys.stderr)
        print(key)
        sys.exit(0)
budget = int(os.environ.get("VL2V_DEMO_BUDGET", "20000"))
key = call("/v1/admin/keys", os.environ["VENDOR_ADMIN_TOKEN"],
           {"name": "compose-demo", "budget": budget})["key"]
saved.write_text(key + "\n")
saved.chmod(0o600)
print(f"demo-entrypoint: created an API key with budget {budget}, saved in {saved}",
      file=sys.stderr)
print(key)
PY
)
    export VL2V_API_KEY
fi
exec "$@"
