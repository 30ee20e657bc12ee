#!/usr/bin/env bash
# Smoke test of the Docker path: build the vendor image, `compose up`, wait for health, create a
# key with the CLI inside the container, one image and one text query through the published
# port, check the ledger survives `down` + `up` (the named volume), tear everything down.
#
#   bash scripts/compose-smoke.sh                   (or: make smoke-compose)
#
# Needs a Docker engine, `docker compose` (v2) or `docker-compose` (v1), and python3 on the host
# (stdlib only: it writes the PNG and makes the HTTP calls). Environment knobs:
#   BASE_IMAGE        base of the image (default python:3.11-slim)
#   TORCH_INDEX_URL   where pip gets torch (default: the Dockerfile's CPU wheel index)
#   TORCH_WHEELS      space-separated torch/torchvision wheel files copied into docker/wheels/
#                     for the build (offline builds); removed again afterwards
#   SMOKE_PORT        host port to publish (default 18000, so a running vendor on 8000 is safe)
#   SMOKE_HEALTH_TIMEOUT  seconds to wait for a healthy container (default 300)
#   SMOKE_DEMO=1      also build the `demo` profile's client and run a 2-step distillation
#                     through it against the vendor (http://vendor:8000); off by default
#   SMOKE_SCALE=1     also run the `scale` profile (PostgreSQL, 3 replicas, HAProxy), started as
#                     docs/deployment.md says (`--profile scale up -d lb`): a key made with the CLI
#                     in a replica spends through the balancer; a key's budget is exact across
#                     replicas (charged rows == served requests, 20 of 30 with budget 20), the
#                     balancer spreads the load over all three, idempotent retries replay wherever
#                     they land, and all that holds through `compose restart vendor-2` while
#                     requests are sent (it must stop inside that window, and serve again after).
#                     Uses the official postgres/haproxy images, or builds docker/offline/
#                     stand-ins on BASE_IMAGE when they cannot be pulled (SMOKE_OFFLINE_IMAGES=1
#                     forces it)
#   SMOKE_SCALE_PORT  host port of the load balancer (default 18080)
#   SMOKE_RESTART_PACE  seconds between the requests sent during the restart (default 2; the
#                     15 of them must outlast the replica's stop)
# The stack runs as its own compose project (default vl2v-smoke) with a generated admin token;
# `down -v` at the end (and on any failure) removes its containers and volumes only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-vl2v-smoke}
export BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
export VENDOR_PORT=${SMOKE_PORT:-18000}
export VENDOR_IMAGE=${VENDOR_IMAGE:-vl2v-vendor:smoke}
export VENDOR_SCALE_PORT=${SMOKE_SCALE_PORT:-18080}
SCALE_URL="http://127.0.0.1:${VENDOR_SCALE_PORT}"
HEALTH_TIMEOUT=${SMOKE_HEALTH_TIMEOUT:-300}
BASE_URL="http://127.0.0.1:${VENDOR_PORT}"

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    echo "compose-smoke: FAIL: neither 'docker compose' nor 'docker-compose' found" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "compose-smoke: FAIL: python3 not found" >&2; exit 1; }

VENDOR_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
export VENDOR_ADMIN_TOKEN
WORK=$(mktemp -d /tmp/compose-smoke.XXXXXX)
COPIED_WHEELS=()
PASSED=()
CURRENT="setup"
START=$(date +%s)

log() { printf '[smoke %4ss] %s\n' "$(($(date +%s) - START))" "$*"; }
ok() { PASSED+=("$1"); log "ok: $1"; }
compose() { "${COMPOSE[@]}" "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT
    if [ "$rc" -ne 0 ]; then
        log "FAILED during: $CURRENT; vendor logs (last 40 lines):"
        compose logs --no-color --tail=40 vendor 2>&1 | sed 's/^/    /' || true
        if [ "${SMOKE_SCALE:-0}" = 1 ]; then
            log "scale profile logs (last 15 lines each, health checks left out):"
            compose --profile scale logs --no-color --tail=15 postgres migrate vendor-1 vendor-2 \
                vendor-3 lb 2>&1 | grep -v 'GET /readyz' | sed 's/^/    /' || true
        fi
    fi
    log "teardown: ${COMPOSE[*]} down -v"
    compose --profile demo --profile scale down -v --remove-orphans >"$WORK/down.log" 2>&1 \
        || cat "$WORK/down.log"
    for w in "${COPIED_WHEELS[@]}"; do rm -f "$w"; done
    rm -rf "$WORK"
    echo "================ compose smoke summary ================"
    for p in "${PASSED[@]}"; do echo "  PASS  $p"; done
    if [ "$rc" -eq 0 ]; then
        echo "  RESULT: PASS (${#PASSED[@]} checks, $(($(date +%s) - START)) s, ${COMPOSE[*]})"
    else
        echo "  FAIL  $CURRENT"
        echo "  RESULT: FAIL (exit $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Host-side HTTP client and PNG writer (stdlib only, so the host needs no packages).
cat >"$WORK/smoke_http.py" <<'PY'
"""Helper of compose-smoke.sh: `png`, `call METHOD URL TOKEN [JSON_BODY]`, `check ...`."""
import base64, datetime, json, math, struct, sys, time, urllib.error, urllib.request, zlib


def png_b64(width=48, height=32):
    """A real RGB PNG (a colour gradient), base64-encoded."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (x * 5 % 256, y * 7 % 256, 128))
        for y in range(height)
    )
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    raw = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
           + chunk(b"IEND", b""))
    return base64.b64encode(raw).decode()


def call(method, url, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode(errors="replace")


def fail(msg):
    print("check failed: " + msg, file=sys.stderr)
    sys.exit(1)


def embed(base, key, kind, dim):
    body = {"images": [png_b64()]} if kind == "images" else {"texts": ["a photo of a house"]}
    status, headers, out = call("POST", f"{base}/v1/embeddings/{kind}", key, body)
    if status != 200:
        fail(f"{kind}: HTTP {status}: {out}")
    emb = out["data"][0]["embedding"]
    norm = math.sqrt(sum(v * v for v in emb))
    if len(out["data"]) != 1 or len(emb) != dim or abs(norm - 1) > 1e-3:
        fail(f"{kind}: {len(out['data'])} items, dim {len(emb)} (card {dim}), norm {norm}")
    if out["usage"]["queries"] != 1 or headers.get("X-Queries-Charged") != "1":
        fail(f"{kind}: charged {out['usage']} / header {headers.get('X-Queries-Charged')}")
    print(f"{kind}: 1 item, dim {dim}, norm {norm:.4f}, budget {out['budget']}, "
          f"request {out['request_id']}")


def usage(base, key):
    status, _, out = call("GET", f"{base}/v1/usage", key)
    if status != 200:
        fail(f"usage: HTTP {status}: {out}")
    rows = sorted((e["request_id"], e["endpoint"], e["queries"], e["status"])
                  for e in out["entries"])
    return {"budget": out["budget"], "requests": out["requests"], "ledger": rows}


# Answers that mean "not now, ask again": in flight on another replica (409), the balancer with
# no ready replica or a replica going away (502/503). Anything else that is not final fails.
TRANSIENT = {409, 502, 503}


def scale_send(base, key, i, stats):
    """Text request `i` (Idempotency-Key scale-i), sent again until a final answer (200/402)."""
    body = json.dumps({"texts": [f"scale smoke {i}"]}).encode()
    for _ in range(90):
        req = urllib.request.Request(f"{base}/v1/embeddings/texts", method="POST", data=body)
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", "Bearer " + key)
        req.add_header("Idempotency-Key", f"scale-{i}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, headers, out = resp.status, resp.headers, json.load(resp)
        except urllib.error.HTTPError as err:
            status, headers, out = err.code, err.headers, err.read().decode(errors="replace")
        except OSError:
            status, out = None, "no connection"
        if status in (200, 402):
            return status, headers, out
        if status is not None and status not in TRANSIENT:
            fail(f"request {i}: HTTP {status}: {out}")
        stats[str(status)] = stats.get(str(status), 0) + 1
        time.sleep(1)
    fail(f"request {i}: no final answer in 90 tries (last HTTP {status})")


def scale_ledger(base, state):
    """The key's charged ledger rows are exactly the served requests; returns the budget."""
    status, _, out = call("GET", f"{base}/v1/usage?limit=100", state["key"])
    if status != 200:
        fail(f"usage: HTTP {status}: {out}")
    charged = sorted(e["request_id"] for e in out["entries"] if e["status"] == "charged")
    if sorted(state["served"].values()) != charged or out["budget"]["used"] != len(charged):
        fail(f"ledger {out['budget']} / {len(charged)} charged rows vs "
             f"{len(state['served'])} served")
    return out["budget"]


def scale(base, admin, phase, state_file, pace="0"):
    """Exact budgets through the load balancer: a key of budget 20 and 30 one-text requests with
    Idempotency-Keys, each answered one sent again (a free replay of the same request id).
    Phase 1 sends requests 0-14; phase 2 sends 15-29, `pace` seconds apart, while the caller
    restarts a replica (its time window is kept for the caller's check); phase 3, once that
    replica is back, sends all 30 again: every served one replays, every refused one is still
    refused. After each phase the ledger's charged rows are exactly the served requests."""
    if phase == "1":
        status, _, out = call("POST", f"{base}/v1/admin/keys", admin,
                              {"name": "scale-smoke", "budget": 20})
        if status != 201:
            fail(f"create key: HTTP {status}: {out}")
        state = {"key": out["key"], "served": {}, "refused": [], "replays": 0, "retried": {}}
    else:
        state = json.load(open(state_file))
    key = state["key"]
    todo = {"1": range(0, 15), "2": range(15, 30), "3": range(0, 30)}[phase]
    state[f"t{phase}_start"] = time.time()
    for i in todo:
        if phase == "2" and i > 15:
            time.sleep(float(pace))
        # phase 3 only re-sends; phases 1 and 2 send, then retry as a client would
        for attempt in ([1] if phase == "3" else [0, 1]):
            status, headers, out = scale_send(base, key, i, state["retried"])
            replayed = status == 200 and headers.get("Idempotent-Replayed") == "true"
            if status == 402:
                if attempt == 0:
                    state["refused"].append(i)
                elif str(i) in state["served"]:
                    fail(f"request {i} was served, its retry refused: {out}")
                continue
            if attempt == 0:
                state["replays"] += replayed  # answered before, the answer lost on the way
                state["served"][str(i)] = out["request_id"]
                continue
            if str(i) not in state["served"]:
                fail(f"request {i} was refused, its retry served: {out['request_id']}")
            if not replayed or out["usage"]["queries"]:
                fail(f"retry of {i} was not a free replay: {dict(headers)} {out['usage']}")
            if out["request_id"] != state["served"][str(i)]:
                fail(f"retry of {i} answered as {out['request_id']}, "
                     f"first as {state['served'][str(i)]}")
            state["replays"] += 1
    state[f"t{phase}_end"] = time.time()
    budget = scale_ledger(base, state)
    if phase != "1" and (budget["used"] != 20 or len(state["refused"]) != 10):
        fail(f"budget not exact: {budget}, {len(state['refused'])} refused (want 20 and 10)")
    json.dump(state, open(state_file, "w"))
    took = state[f"t{phase}_end"] - state[f"t{phase}_start"]
    print(f"phase {phase}: served {len(state['served'])}, refused {len(state['refused'])}, "
          f"replays {state['replays']}, budget {budget}, sent again after "
          f"{state['retried'] or 'nothing'}, {took:.1f} s")


def docker_time(value):
    """Seconds since the epoch of a Docker timestamp (RFC 3339, nanoseconds, UTC)."""
    head, _, frac = value.rstrip("Z").partition(".")
    stamp = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp() + float("0." + (frac or "0"))


def window(state_file, stopped_at, started_at):
    """The restarted replica stopped while phase 2 was sending (a restart under load)."""
    state = json.load(open(state_file))
    start, end = state["t2_start"], state["t2_end"]
    stopped, started = docker_time(stopped_at), docker_time(started_at)
    if not start <= stopped <= end:
        fail(f"the replica stopped {stopped - start:+.1f} s from the second half's start, "
             f"outside it ({end - start:.1f} s long): no restart under load")
    print(f"stopped {stopped - start:.1f} s into the second half ({end - start:.1f} s long), "
          f"started again {started - stopped:.1f} s later")


def main(argv):
    cmd, base = argv[0], argv[1]
    if cmd == "card":
        status, _, out = call("GET", f"{base}/v1/models", None)
        if status != 200:
            fail(f"models: HTTP {status}: {out}")
        card = out["data"][0]
        keys = ("id", "pretrained", "trained", "embed_dim", "fingerprint")
        print(json.dumps({k: card.get(k) for k in keys}))
    elif cmd == "embed":
        embed(base, argv[2], argv[3], int(argv[4]))
    elif cmd == "usage":
        print(json.dumps(usage(base, argv[2]), sort_keys=True))
    elif cmd == "scale":
        scale(base, argv[2], argv[3], argv[4], *argv[5:])
    elif cmd == "window":
        window(argv[1], argv[2], argv[3])
    elif cmd == "readyz":
        status, _, out = call("GET", f"{base}/readyz", None)
        if status != 200:
            fail(f"readyz: HTTP {status}: {out}")
        print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
PY
http() { python3 "$WORK/smoke_http.py" "$@"; }

wait_healthy() {  # [SERVICE] (default: vendor)
    local svc=${1:-vendor} cid status deadline=$(($(date +%s) + HEALTH_TIMEOUT))
    cid=$(compose ps -q "$svc")
    [ -n "$cid" ] || { log "no $svc container"; return 1; }
    while :; do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo gone)
        [ "$status" = healthy ] && return 0
        if [ "$status" = gone ] || [ "$(date +%s)" -ge "$deadline" ]; then
            log "$svc container is '$status' after waiting"
            compose logs --no-color --tail=30 "$svc" 2>&1 | sed 's/^/    /'
            return 1
        fi
        sleep 3
    done
}
# Embedding requests in a vendor container's access log [since a Docker timestamp].
served_by() {
    docker logs ${2:+--since "$2"} "$(compose ps -q "$1")" 2>&1 \
        | grep -c 'POST /v1/embeddings/' || true
}

COMPOSE_VERSION=$("${COMPOSE[@]}" version --short 2>/dev/null || echo '?')
log "compose: ${COMPOSE[*]} ($COMPOSE_VERSION); project $COMPOSE_PROJECT_NAME"
log "base image $BASE_IMAGE; torch index ${TORCH_INDEX_URL:-(Dockerfile default)}; port $VENDOR_PORT"

CURRENT="compose config rejects a missing admin token"
if env -u VENDOR_ADMIN_TOKEN VENDOR_ADMIN_TOKEN= "${COMPOSE[@]}" config >"$WORK/cfg.log" 2>&1; then
    log "compose config accepted an empty VENDOR_ADMIN_TOKEN"; false
fi
grep -q "set VENDOR_ADMIN_TOKEN in .env" "$WORK/cfg.log" || { cat "$WORK/cfg.log"; false; }
ok "$CURRENT"

CURRENT="build"
if [ -n "${TORCH_WHEELS:-}" ]; then
    for w in $TORCH_WHEELS; do
        cp "$w" docker/wheels/ && COPIED_WHEELS+=("docker/wheels/$(basename "$w")")
    done
    log "torch wheels for the build: ${COPIED_WHEELS[*]}"
fi
compose build vendor >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; false; }
SIZE=$(docker image inspect -f '{{.Size}}' "$VENDOR_IMAGE" | awk '{printf "%.2f GB", $1/1e9}')
TORCH=$(docker run --rm --entrypoint python3 "$VENDOR_IMAGE" -c \
    'import torch, torchvision; print(torch.__version__, torchvision.__version__)')
ok "build vendor image ($VENDOR_IMAGE, $SIZE, torch/torchvision $TORCH)"

CURRENT="up + healthy"
compose up -d vendor >>"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log"; false; }
wait_healthy
log "readyz: $(http readyz "$BASE_URL")"
ok "$CURRENT (HEALTHCHECK on /readyz)"

CURRENT="runs as non-root"
uid=$(compose exec -T vendor id -u)
[ "$uid" != 0 ] || { log "the vendor runs as root"; false; }
ok "$CURRENT (uid $uid)"

CURRENT="create key with the CLI inside the container"
compose exec -T vendor vendor-service keys create --name smoke --budget 100 >"$WORK/key.json"
KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$WORK/key.json")
[ -n "$KEY" ]
ok "$CURRENT"

CURRENT="image + text query through the published port"
CARD=$(http card "$BASE_URL")
DIM=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["embed_dim"])' "$CARD")
log "model card: $CARD"
# The default stack must serve the shipped demo teacher (trained weights), not random ones.
python3 -c 'import json,sys; c=json.loads(sys.argv[1]); want=sys.argv[2]
assert c["id"] == want, (c["id"], want)
assert c["trained"] or want != "vl2v-demo-v3", "the demo teacher is served with random weights"' \
    "$CARD" "${VENDOR_MODEL__NAME:-vl2v-demo-v3}"
http embed "$BASE_URL" "$KEY" images "$DIM"
http embed "$BASE_URL" "$KEY" texts "$DIM"
BEFORE=$(http usage "$BASE_URL" "$KEY")
python3 -c 'import json,sys; u=json.loads(sys.argv[1]); assert u["budget"]["used"]==2, u
assert len(u["ledger"])==2, u' "$BEFORE"
MODEL=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$CARD")
ok "$CURRENT (model $MODEL; 2 queries charged, 2 ledger rows)"

CURRENT="ledger survives down + up"
compose down >>"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log"; false; }
compose up -d vendor >>"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log"; false; }
wait_healthy
AFTER=$(http usage "$BASE_URL" "$KEY")
if [ "$BEFORE" != "$AFTER" ]; then
    log "usage before: $BEFORE"; log "usage after:  $AFTER"; false
fi
log "usage after restart: $AFTER"
http embed "$BASE_URL" "$KEY" texts "$DIM"
python3 -c 'import json,sys; u=json.loads(sys.argv[1]); assert u["budget"]["used"]==3, u' \
    "$(http usage "$BASE_URL" "$KEY")"
ok "$CURRENT (key, budget and ledger unchanged; the key still spends: used 2 -> 3)"

if [ "${SMOKE_DEMO:-0}" = 1 ]; then
    CURRENT="demo profile: client container distills from the vendor"
    compose --profile demo build demo >"$WORK/build-demo.log" 2>&1 \
        || { tail -40 "$WORK/build-demo.log"; false; }
    # The compose command is the full demo (minutes of training); the smoke only needs the
    # wiring: key from the entrypoint, vendor by its compose name, data, train, results.
    compose --profile demo run --rm demo client-distiller run --data demo \
        --target-domain sketch --algorithms adip --views 1 --steps 2 --align-steps 2 \
        --out /work/runs/smoke --no-progress >"$WORK/demo.log" 2>&1 \
        || { tail -40 "$WORK/demo.log"; false; }
    grep -E "demo-entrypoint|queries sent|adip .*OOD" "$WORK/demo.log" | sed 's/^/    /'
    grep -q "| adip |" "$WORK/demo.log"
    ok "$CURRENT"
fi

if [ "${SMOKE_SCALE:-0}" = 1 ]; then
    CURRENT="scale profile: images for PostgreSQL and HAProxy"
    if [ "${SMOKE_OFFLINE_IMAGES:-0}" = 1 ] || ! docker pull -q "${POSTGRES_IMAGE:-postgres:15-bookworm}" \
            >/dev/null 2>&1 || ! docker pull -q "${HAPROXY_IMAGE:-haproxy:2.8-bookworm}" >/dev/null 2>&1; then
        # Tagged with what they hold: Debian bookworm packages PostgreSQL 15 and HAProxy 2.6.
        export POSTGRES_IMAGE=vl2v-offline/postgres:15 HAPROXY_IMAGE=vl2v-offline/haproxy:2.6
        for pair in "postgres $POSTGRES_IMAGE" "haproxy $HAPROXY_IMAGE"; do
            set -- $pair
            docker build -q -f "docker/offline/$1.Dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
                -t "$2" . >"$WORK/build-$1.log" 2>&1 || { tail -20 "$WORK/build-$1.log"; false; }
        done
    fi
    ok "$CURRENT (${POSTGRES_IMAGE:-postgres:15-bookworm}, ${HAPROXY_IMAGE:-haproxy:2.8-bookworm})"

    CURRENT="scale profile: up + healthy (postgres, migrate, 3 replicas, lb)"
    # The single vendor's checks are done: stop it, so that the replicas get the CPU. Then the
    # command docs/deployment.md gives: `up lb` brings postgres, migrate and the replicas by
    # depends_on (a bare `--profile scale up` would start the single vendor too).
    compose stop vendor >>"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log"; false; }
    compose --profile scale up -d lb >>"$WORK/compose.log" 2>&1 \
        || { cat "$WORK/compose.log"; false; }
    for svc in postgres vendor-1 vendor-2 vendor-3 lb; do wait_healthy "$svc"; done
    # By the labels both compose versions set (v2's `ps -q` lists running containers only).
    project=(--filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
    MIGRATE_CID=$(docker ps -aq "${project[@]}" --filter label=com.docker.compose.service=migrate)
    [ "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$MIGRATE_CID")" = "exited 0" ] \
        || { log "migrate did not exit 0"; compose logs --no-color migrate; false; }
    [ -z "$(docker ps -q "${project[@]}" --filter label=com.docker.compose.service=vendor)" ] \
        || { log "up lb started the single vendor too"; false; }
    MIGRATED=$(compose logs --no-color migrate 2>&1 | grep -o '"schema_version": [0-9]*' | tail -1)
    [ -n "$MIGRATED" ] || { compose logs --no-color migrate; false; }
    ok "$CURRENT (migrate exited 0, $MIGRATED)"

    CURRENT="scale profile: key created with the CLI in a replica spends through the balancer"
    compose --profile scale exec -T vendor-1 vendor-service keys create --name smoke-cli \
        --budget 5 >"$WORK/scale-key.json"
    SKEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' \
        "$WORK/scale-key.json")
    http embed "$SCALE_URL" "$SKEY" texts "$DIM" | sed 's/^/    /'
    ok "$CURRENT"

    CURRENT="scale profile: budget exact across replicas, replays free, survives a restart"
    http scale "$SCALE_URL" "$VENDOR_ADMIN_TOKEN" 1 "$WORK/scale.json" | sed 's/^/    /'
    SPREAD=""
    for svc in vendor-1 vendor-2 vendor-3; do
        n=$(served_by "$svc")
        [ "$n" -gt 0 ] \
            || { log "$svc served no request: the balancer did not spread the load"; false; }
        SPREAD="$SPREAD $svc:$n"
    done
    log "embedding requests per replica before the restart:$SPREAD"
    # The second half is sent, SMOKE_RESTART_PACE apart, while vendor-2 restarts (SIGTERM, a
    # new process, the model loaded again); HAProxy takes it out, then back in.
    CID2=$(compose ps -q vendor-2)
    STARTED_BEFORE=$(docker inspect -f '{{.State.StartedAt}}' "$CID2")
    compose restart vendor-2 >>"$WORK/compose.log" 2>&1 &
    RESTART=$!
    http scale "$SCALE_URL" "$VENDOR_ADMIN_TOKEN" 2 "$WORK/scale.json" "${SMOKE_RESTART_PACE:-2}" \
        | sed 's/^/    /'
    wait "$RESTART" || { cat "$WORK/compose.log"; false; }
    wait_healthy vendor-2
    STARTED_AFTER=$(docker inspect -f '{{.State.StartedAt}}' "$CID2")
    [ "$STARTED_AFTER" != "$STARTED_BEFORE" ] || { log "vendor-2 was not restarted"; false; }
    http window "$WORK/scale.json" "$(docker inspect -f '{{.State.FinishedAt}}' "$CID2")" \
        "$STARTED_AFTER" | sed 's/^/    vendor-2 /'
    # Every request once more, after the restart: replays and refusals, wherever they land.
    http scale "$SCALE_URL" "$VENDOR_ADMIN_TOKEN" 3 "$WORK/scale.json" | sed 's/^/    /'
    n=$(served_by vendor-2 "$STARTED_AFTER")
    [ "$n" -gt 0 ] || { log "the restarted vendor-2 got no request back"; false; }
    ok "$CURRENT (20 of 30 served, 10 refused, every retry a free replay;$SPREAD before the \
restart; vendor-2 restarted mid-load and served $n after)"
fi

CURRENT="teardown removes the volume"
compose --profile demo --profile scale down -v --remove-orphans >>"$WORK/compose.log" 2>&1 \
    || { cat "$WORK/compose.log"; false; }
if docker volume ls -q | grep -E "^${COMPOSE_PROJECT_NAME}_(vendor-data|demo-work|ledger-pg)$"; then
    log "the volumes above still exist"; false
fi
ok "$CURRENT"
