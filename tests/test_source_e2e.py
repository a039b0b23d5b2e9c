"""Issue 8: a symlink to a host file, and secrets in the source folder, never reach the image
(built for real, unpacked with umoci, every file of the root file system checked)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import pybuild, unpacked

pytestmark = pytest.mark.slow
MARKER = "host-only-content-3f9c1e"


def test_links_to_host_files_and_secrets_do_not_leak(tmp_path):
    host = tmp_path / "host"
    (host / "dir").mkdir(parents=True)
    (host / "secret.txt").write_text(MARKER)
    (host / "dir" / "inner.txt").write_text(MARKER)
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('hello')\n")
    (app / "real.txt").write_text("inside\n")
    (app / ".env").write_text(f"TOKEN={MARKER}\n")
    (app / "id_ed25519").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{MARKER}\n")
    (app / ".git").mkdir()
    (app / ".git" / "config").write_text(MARKER)
    os.symlink(host / "secret.txt", app / "abs-link.txt")
    os.symlink("../host/secret.txt", app / "rel-link.txt")
    os.symlink("../host/dir", app / "dir-link")
    os.symlink("real.txt", app / "good-link.txt")
    out = tmp_path / "oci"
    proc = pybuild("build", str(app), "-o", f"oci:{out}:app")
    assert "abs-link.txt: symlink to" in proc.stderr and "left out of the image" in proc.stderr
    with unpacked(out, "app", tmp_path) as bundle:
        rootfs = bundle / "rootfs"
        workspace = rootfs / "workspace"
        assert (workspace / "main.py").is_file()
        assert os.readlink(workspace / "good-link.txt") == "real.txt"
        for name in ("abs-link.txt", "rel-link.txt", "dir-link", ".env", "id_ed25519", ".git"):
            assert not os.path.lexists(workspace / name), name
        marker = MARKER.encode()
        checked = 0
        for dirpath, _, filenames in os.walk(rootfs):
            for f in filenames:
                path = Path(dirpath) / f
                if path.is_file() and not path.is_symlink():
                    assert marker not in path.read_bytes(), path
                    checked += 1
        assert checked > 100  # the whole stack was looked at, not an empty folder


def test_secret_included_on_purpose_is_shipped_with_a_warning(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('hello')\n")
    (app / ".env").write_text("MODE=demo\n")
    (app / ".dockerignore").write_text("!.env\n")
    out = tmp_path / "oci"
    proc = pybuild("build", str(app), "-o", f"oci:{out}:app")
    assert "warning: .env: looks like a secret and is included on purpose" in proc.stderr
    with unpacked(out, "app", tmp_path) as bundle:
        assert (bundle / "rootfs/workspace/.env").read_text() == "MODE=demo\n"
