#!/usr/bin/env bash
# Build frp 0.70.1's own dashboard UI (Vue, web/frps in frp's source) from the snapshot that
# ../shared/peers/native unpacked, into ~/.cache/frp-native/ui/frps, for the interop test that
# serves it from pyfrps (webServer.assetsDir). Idempotent; needs node >= 20.19 and the npm
# registry. Nothing built here is ever committed.
set -euo pipefail
root="${FRP_NATIVE_DIR:-$HOME/.cache/frp-native}"
out="$root/ui/frps"
if [ -f "$out/index.html" ]; then
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
(cd "$work/frps" && npx vite build --logLevel error >/dev/null)
mkdir -p "$(dirname "$out")"
rm -rf "$out"
cp -r "$work/frps/dist" "$out"
rm -rf "$work"
echo "$out"
