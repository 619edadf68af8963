#!/usr/bin/env bash
# Build frp 0.70.1's own web UIs (Vue: web/frps, the dashboard, and web/frpc, the admin UI) from
# the snapshot that ../shared/peers/native unpacked, into ~/.cache/frp-native/ui/{frps,frpc}, for
# the interop test that serves them from pyfrps and pyfrpc (webServer.assetsDir). Idempotent;
# needs node >= 20.19 and the npm registry. Nothing built here is ever committed.
set -euo pipefail
root="${FRP_NATIVE_DIR:-$HOME/.cache/frp-native}"
out="$root/ui"
if [ -f "$out/frps/index.html" ] && [ -f "$out/frpc/index.html" ]; then
    echo "$out"
    exit 0
fi
if [ ! -d "$root/src/web/frps" ]; then
    echo "frp's source is not unpacked: run ../shared/peers/native first" >&2
    exit 1
fi
command -v npm >/dev/null || { echo "npm is not installed" >&2; exit 1; }
work="$root/ui-build"
rm -rf "$work"
cp -r "$root/src/web" "$work"
(cd "$work" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
mkdir -p "$out"
for side in frps frpc; do
    (cd "$work/$side" && npx vite build --logLevel error >/dev/null)
    rm -rf "${out:?}/$side"
    cp -r "$work/$side/dist" "$out/$side"
done
rm -rf "$work"
echo "$out"
