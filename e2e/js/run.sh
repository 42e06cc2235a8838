#!/usr/bin/env bash
# Runs the official JS SDK (npm @synonymdev/pubky, version pinned in package.json) against a
# fresh pubky-edge on loopback. The SDK's testnet preset resolves through a pkarr relay on
# localhost:15411: that is the device's own relay (`pkarr_relay.listen_socket`), which serves
# the homeserver's record (HTTP port in SvcParam 65280 for `localhost`) with the DHT off.
# Needs node ≥ 18, network access for `npm install` the first time, and Chromium
# (/usr/bin/chromium or $CHROMIUM) for the browser half.
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] || npm install --no-audit --no-fund
bin="${PUBKY_EDGE_BIN:-../../target/debug/pubky-edge}"
tmp="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$tmp/c.toml" <<TOML
[general]
signup_mode = "open"
[drive]
icann_listen_socket = "127.0.0.1:$port"
pubky_listen_socket = "127.0.0.1:0"
[pkdns]
dht = false
public_ip = "127.0.0.1"
icann_domain = "localhost"
[pkarr_relay]
listen_socket = "127.0.0.1:15411"
[admin]
listen_socket = "127.0.0.1:0"
[metrics]
enabled = false
[dashboard]
enabled = false
TOML
"$bin" --config "$tmp/c.toml" --data-dir "$tmp/data" info > "$tmp/info"
hs=$(sed -n 's/^public key: *//p' "$tmp/info")
"$bin" --config "$tmp/c.toml" --data-dir "$tmp/data" > "$tmp/server.log" 2>&1 &
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:15411/$hs" >/dev/null && break
    sleep 0.1
done
node client.mjs "$hs"
# The browser half: the same SDK in headless Chromium, and another origin trying its cookie.
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium_bin" ]; then
    CHROMIUM="$chromium_bin" node browser.mjs "$hs" "$port"
elif [ -n "${CI:-}" ]; then
    echo "chromium is required in CI (apt-get install chromium)" >&2
    exit 1
else
    echo "== no $chromium_bin: the browser half (browser.mjs) did not run"
fi
echo "== requests the SDK made (method, path, status):"
sed -n 's/.*method=\([A-Z]*\) path=\([^ ]*\) status=\([0-9]*\).*/\1 \2 \3/p' "$tmp/server.log" \
  | sed -E 's#/[a-z0-9]{52}/#/<pk>/#' | sort | uniq -c
