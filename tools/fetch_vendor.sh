#!/usr/bin/env bash
# Fetch the third-party browser assets the built book serves itself, so that math and widgets
# render with no CDN (offline, or on a reader's machine that cannot reach the CDNs).
#   MathJax 3.2.2 (Apache-2.0)                      -> _vendor/mathjax/
#   RequireJS 2.3.4 (MIT)                           -> _vendor/requirejs/
#   @jupyter-widgets/html-manager 1.0.6 (BSD-3)     -> _vendor/html-manager/
# Only the files the site loads are kept, each package's licence beside them.
# Needs npm (it only downloads the package tarballs: `npm pack`). Run from anywhere:
#   bash tools/fetch_vendor.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/_vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm pack --silent mathjax@3.2.2 requirejs@2.3.4 @jupyter-widgets/html-manager@1.0.6 >/dev/null
for t in *.tgz; do mkdir -p "${t%.tgz}"; tar xzf "$t" -C "${t%.tgz}"; done
mj=mathjax-3.2.2/package
rq=requirejs-2.3.4/package
hm=jupyter-widgets-html-manager-1.0.6/package

rm -rf "$dest/mathjax" "$dest/requirejs" "$dest/html-manager"
mkdir -p "$dest/mathjax/output/chtml/fonts" "$dest/requirejs" "$dest/html-manager"
# tex-chtml-full bundles every TeX extension, so nothing is autoloaded later; MathJax finds its
# fonts relative to the script, hence the output/chtml/fonts/woff-v2 layout.
cp "$mj/es5/tex-chtml-full.js" "$dest/mathjax/"
cp -r "$mj/es5/output/chtml/fonts/woff-v2" "$dest/mathjax/output/chtml/fonts/"
cp "$mj/LICENSE" "$dest/mathjax/LICENSE"
cp "$rq/require.js" "$dest/requirejs/"
# RequireJS ships no LICENSE file; its header states MIT, and package.json says so too.
sed -n '1,4p' "$rq/require.js" > "$dest/requirejs/LICENSE"
grep '"license"' "$rq/package.json" >> "$dest/requirejs/LICENSE"
cp "$hm/dist/embed-amd.js" "$dest/html-manager/"
# The bundle's CSS declares its icon fonts woff2 first; current browsers need only those.
# (_vendor/widgets-assets-path.js, the book's own file, tells the bundle where they are.)
cp "$hm"/dist/*.woff2 "$dest/html-manager/"
cp "$hm/LICENSE" "$dest/html-manager/LICENSE"
cp "$hm/dist/embed.js.LICENSE.txt" "$dest/html-manager/THIRD-PARTY-LICENSES.txt"
echo "vendored into $dest:"
du -sh "$dest"/*/
