"""Issue 8: what of the source folder the build sees. Ignore files (gitignore syntax),
project.toml include/exclude, always-excluded folders, secrets, and symlinks."""
from __future__ import annotations

import os

from builder.source import SourceTree
from helpers import write_tree as tree

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"




def seen(src: SourceTree) -> set[str]:
    return {rel for rel, _, _ in src.files()}


def test_dockerignore_gcloudignore_and_project_exclude(tmp_path):
    root = tree(tmp_path, {"app.py": "", "docs/a.md": "", "build/out.o": "", "logs/x.log": "", "keep.log": "",
                           "tests/t.py": "", "sub/tmp.swp": "", ".gitignore": "*.swp\n",
                           ".dockerignore": "# comment\ndocs/\n*.log\n!keep.log\n",
                           ".gcloudignore": "#!include:.gitignore\n/build\n"})
    files = seen(SourceTree(root, exclude=["tests/"]))
    assert "app.py" in files and "keep.log" in files
    for gone in ("docs/a.md", "logs/x.log", "build/out.o", "tests/t.py", "sub/tmp.swp"):
        assert gone not in files, gone


def test_include_lists_the_only_files(tmp_path):
    root = tree(tmp_path, {"cmd/main.go": "", "go.mod": "", "README.md": "", "internal/x.go": ""})
    files = {f for f in seen(SourceTree(root, include=["cmd/", "go.mod", "*.go"])) if not (root / f).is_dir()}
    assert files == {"cmd/main.go", "go.mod", "internal/x.go"}


def test_vcs_and_pybuild_folders_are_always_left_out(tmp_path):
    root = tree(tmp_path, {".git/config": "[remote]", ".pybuild/oci/index.json": "{}", "app.py": "",
                           "node_modules/x/index.js": "", "__pycache__/a.pyc": ""})
    assert seen(SourceTree(root, include=[".git/", "app.py"])) == {"app.py"}


def test_secrets_are_left_out_unless_included_on_purpose(tmp_path):
    root = tree(tmp_path, {"app.py": "", ".env": "TOKEN=1", ".env.production": "TOKEN=2", "id_rsa": KEY,
                           "certs/server.pem": "x", ".ssh/known_hosts": "", "deploy/key.txt": KEY,
                           "fixtures/cert.crt": "-----BEGIN CERTIFICATE-----\n"})
    src = SourceTree(root)
    files = seen(src)
    assert files == {"app.py", "deploy", "fixtures", "fixtures/cert.crt", "certs"}
    assert any("deploy/key.txt: holds a private key" in w for w in src.warnings)
    assert "id_rsa" in src.secrets_left_out
    (root / ".dockerignore").write_text("!.env\n")
    src = SourceTree(root, exclude=[])
    assert ".env" in seen(src)
    assert [w for w in src.warnings if w.startswith(".env:")] == [
        ".env: looks like a secret and is included on purpose; it will be in the image"]
    src = SourceTree(root, include=["app.py", "deploy/key.txt"])
    assert "deploy/key.txt" in seen(src) and any("deploy/key.txt: looks like a secret" in w for w in src.warnings)


def test_symlinks_out_of_the_tree_are_never_followed(tmp_path):
    host = tree(tmp_path / "host", {"secret.txt": "host secret", "dir/inner.txt": "host dir"})
    root = tree(tmp_path / "app", {"main.py": "", "data/real.txt": "ok"})
    os.symlink(host / "secret.txt", root / "abs-link")
    os.symlink("../host/secret.txt", root / "rel-link")
    os.symlink("../host/dir", root / "dir-link")
    os.symlink("data/../../host/secret.txt", root / "sneaky-link")
    os.symlink("/etc/passwd", root / "data" / "passwd")
    os.symlink("data/real.txt", root / "good-link")
    os.symlink("../main.py", root / "data" / "up-but-inside")
    src = SourceTree(root)
    dest = tmp_path / "copy"
    src.copy_to(dest)
    assert sorted(src.skipped_links) == ["abs-link", "data/passwd", "dir-link", "rel-link", "sneaky-link"]
    assert os.readlink(dest / "good-link") == "data/real.txt"
    assert os.readlink(dest / "data" / "up-but-inside") == "../main.py"
    for path in dest.rglob("*"):
        assert not path.is_symlink() or not os.path.isabs(os.readlink(path))
        if path.is_file():
            assert "host" not in path.read_text()
    assert len([w for w in src.warnings if "points outside the source folder" in w]) == 5
