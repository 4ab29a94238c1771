"""Build .dvc/offline_plots.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

DVC's default page loads these libraries from a CDN, so `dvc plots show/diff` is blank on a node
without internet. This page carries them (minified builds from the npm registry, sha256-checked)
and leaves out DVC's `scripts` placeholder, which is where DVC would insert the CDN tags.
The output is committed, so a fresh clone needs neither npm nor network; rerun after a version bump:

    python scripts/build_plots_html.py               # npm pack into a temporary directory
    python scripts/build_plots_html.py --from DIR    # DIR holds the three .tgz files already
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / ".dvc" / "offline_plots.html"
# name, version, sha256 of the npm tarball, file inside it. Majors follow dvc-render's CDN tags
# (vega 5, vega-lite 5, vega-embed 6), whose vega-lite v5 specs these render.
PACKAGES = (
    ("vega", "5.33.1", "1b8504b6731c5311be3269c4d84ca996a5cc293bc772283293ede20c490e16c3", "package/build/vega.min.js"),
    (
        "vega-lite",
        "5.23.0",
        "e4cbfdd8f6f1abe381c59cd558fd6a559c12b1496bfdf2e0c3295263a40fe4da",
        "package/build/vega-lite.min.js",
    ),
    (
        "vega-embed",
        "6.29.0",
        "ecf1ee709c2bac9e0a4ead6908114b05b62c71493e10a8a4308109bb070f8eb1",
        "package/build/vega-embed.min.js",
    ),
)
# the literal placeholders DVC fills (dvc_render.html.HTML); `scripts` is deliberately absent
PLOTS, REFRESH = "{plot_divs}", "{refresh_tag}"

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    @REFRESH@
    <title>DVC plots (offline)</title>
    <!-- @VERSIONS@ inlined from npm by scripts/build_plots_html.py: this page needs no network -->
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
@SCRIPTS@
</head>
<body>
    @PLOTS@
</body>
</html>
"""


def fetch(workdir: Path) -> None:
    specs = [f"{name}@{version}" for name, version, _, _ in PACKAGES]
    subprocess.run(["npm", "pack", "--silent", *specs], cwd=workdir, check=True, stdout=subprocess.DEVNULL)


def read_js(tgz: Path, sha256: str, member: str) -> str:
    digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
    if digest != sha256:
        sys.exit(f"{tgz}: sha256 {digest}, expected {sha256}")
    with tarfile.open(tgz) as tar:
        js = tar.extractfile(member).read().decode("utf-8")
    # inside <script>, these would end the element early or be filled in by DVC
    for bad in ("</script", "<!--", PLOTS, REFRESH, "{scripts}"):
        if bad in js:
            sys.exit(f"{tgz}:{member} contains {bad!r}; cannot inline it")
    return js


def build(tgz_dir: Path) -> str:
    scripts = []
    for name, version, sha256, member in PACKAGES:
        js = read_js(tgz_dir / f"{name}-{version}.tgz", sha256, member)
        scripts.append(f"    <script>/* {name}@{version} */\n{js}\n    </script>")
    versions = ", ".join(f"{name}@{version}" for name, version, _, _ in PACKAGES)
    page = PAGE.replace("@VERSIONS@", versions).replace("@REFRESH@", REFRESH).replace("@PLOTS@", PLOTS)
    return page.replace("@SCRIPTS@", "\n".join(scripts))  # last: nothing is replaced inside the JS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="source", type=Path, help="directory with the npm .tgz files (default: npm pack)")
    p.add_argument("--output", type=Path, default=OUTPUT)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or Path(tmp)
        if args.source is None:
            fetch(source)
        page = build(source)
    tmp_out = args.output.with_name(args.output.name + ".tmp")
    tmp_out.write_text(page, encoding="utf-8")
    tmp_out.replace(args.output)
    print(f"wrote {args.output} ({len(page) // 1024} KiB)")


if __name__ == "__main__":
    main()
