"""Static sites: a folder of HTML (public/, site/, dist/, _site/ or the root) served by a tiny
standard-library server on the python-3.13 stack."""
from __future__ import annotations

import shutil
from pathlib import Path

from builder import BuildContext, Buildpack, DetectContext, DetectResult
from builder.buildpack import APP_DIR, cache_key

SITE_DIRS = ("public", "site", "dist", "_site")
SERVER = Path(__file__).with_name("serve.py")
STACK = "python-3.13"


class StaticSiteBuildpack(Buildpack):
    id = "static-site"
    version = "0.1.0"
    description = "Static sites: index.html at the root or in public/, site/, dist/ or _site/"

    def detect(self, ctx: DetectContext) -> DetectResult:
        wanted = ctx.setting("PYBUILD_STATIC_DIR")
        candidates = [wanted] if wanted else [*SITE_DIRS, "."]
        for folder in candidates:
            if (ctx.app_dir / folder / "index.html").is_file():
                where = "the root" if folder == "." else f"{folder}/"
                return DetectResult.passed(f"index.html in {where}", stack=STACK, site_dir=folder)
        looked = f"{wanted}/" if wanted else "the root, " + ", ".join(f"{d}/" for d in SITE_DIRS)
        return DetectResult.failed(f"no index.html in {looked}")

    def build(self, ctx: BuildContext) -> None:
        site = ctx.plan["site_dir"]
        pages = sum(1 for _ in (ctx.app_dir / site).rglob("*.html"))
        ctx.log(f"serving {site}/ ({pages} HTML pages)")
        ctx.layer("server", cache_key(self.version, SERVER.read_bytes()),  # at /layers/static-site/server
                  lambda d: shutil.copyfile(SERVER, d / "serve.py"))
        python = f"/usr/bin/python{ctx.stack.provides.get('python', '3.13')}"
        root = APP_DIR if site == "." else f"{APP_DIR}/{site}"
        ctx.add_process("web", [python, "/layers/static-site/server/serve.py", root], default=True)
        ctx.launch_env["PYTHONDONTWRITEBYTECODE"] = "1"
