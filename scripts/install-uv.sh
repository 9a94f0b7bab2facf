#!/usr/bin/env bash
# Installs the pinned uv (the dependency installer of the embedded backend) from its PyPI wheel, checked against
# the pinned SHA-256. Needs python3 and curl. Idempotent.
#   as root: /usr/local/bin/uv; otherwise: ~/.local/bin/uv (put it on PATH, or set PYEXEC_UV).
set -euo pipefail

version=0.13.9
case "$(uname -m)" in
  x86_64)
    wheel="uv-$version-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    sha256=d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19 ;;
  aarch64)
    wheel="uv-$version-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl"
    sha256=5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe ;;
  *) echo "install-uv: no pinned uv wheel for $(uname -m)" >&2; exit 1 ;;
esac
if [ "$(id -u)" -eq 0 ]; then dest=/usr/local/bin; else dest="$HOME/.local/bin"; fi
if [ -x "$dest/uv" ] && [ "$("$dest/uv" --version 2>/dev/null | cut -d' ' -f2)" = "$version" ]; then
  exit 0
fi

index="${PIP_INDEX_URL:-https://pypi.org/simple}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "install-uv: downloading uv $version"
# The simple index (PEP 691 JSON) names the wheel's URL.
curl -fsSL -H "Accept: application/vnd.pypi.simple.v1+json" "${index%/}/uv/" -o "$tmp/index.json"
url=$(python3 - "$tmp/index.json" "$wheel" "${index%/}/uv/" <<'PY'
import json, sys, urllib.parse
files = json.load(open(sys.argv[1]))["files"]
url = next(f["url"] for f in files if f["filename"] == sys.argv[2])
print(urllib.parse.urljoin(sys.argv[3], url))
PY
)
curl -fsSL "$url" -o "$tmp/$wheel"
echo "$sha256  $tmp/$wheel" | sha256sum -c --quiet -
python3 - "$tmp/$wheel" "$tmp/uv" "$version" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(f"uv-{sys.argv[3]}.data/scripts/uv") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
mkdir -p "$dest"
install -m 0755 "$tmp/uv" "$dest/uv"
echo "install-uv: $("$dest/uv" --version) in $dest"
