#!/bin/sh
# Entrypoint of the demo client container: make sure there is an API key, then run the command.
# With VL2V_API_KEY empty it creates one through the vendor's admin API (POST /v1/admin/keys)
# with VENDOR_ADMIN_TOKEN: a demo shortcut; a real client is handed its key by the vendor.
set -eu
if [ -z "${VL2V_API_KEY:-}" ]; then
    VL2V_API_KEY=$(python3 - <<'PY'
import json, os, urllib.request

req = urllib.request.Request(
    os.environ["VL2V_ENDPOINT"].rstrip("/") + "/v1/admin/keys",
    data=json.dumps({"name": "compose-demo",
                     "budget": int(os.environ.get("VL2V_DEMO_BUDGET", "20000"))}).encode(),
    headers={"Authorization": "Bearer " + os.environ["VENDOR_ADMIN_TOKEN"],
             "Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(req, timeout=30) as resp:
    print(json.load(resp)["key"])
PY
)
    export VL2V_API_KEY
    echo "demo-entrypoint: created API key ${VL2V_API_KEY%"${VL2V_API_KEY#????????}"}... with budget ${VL2V_DEMO_BUDGET:-20000}" >&2
fi
exec "$@"
