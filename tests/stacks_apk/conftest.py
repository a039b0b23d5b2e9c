"""Fixtures: a generated pair of signed APK repositories, served on 127.0.0.1 for the session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.stacks.apk import ApkSource

from .apkrepo import RepositoryServer, sample_repositories


@pytest.fixture(scope="session")
def apk_repos(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("apkrepos")
    info = sample_repositories(root)
    return {**info, "root": root}


@pytest.fixture(scope="session")
def apk_url(apk_repos) -> str:
    with RepositoryServer(apk_repos["root"]) as url:
        yield url


@pytest.fixture
def make_source(apk_repos, tmp_path):
    """ApkSource over the served repositories (or `urls`), caching under this test's tmp dir."""
    def make(urls: list[str], keys: list[Path] | None = None, **extra) -> ApkSource:
        keys = apk_repos["key_paths"] if keys is None else keys
        source = {"type": "apk", "repositories": urls, "keys": [str(k) for k in keys],
                  "architecture": "x86_64", **extra}
        return ApkSource(source, tmp_path / "cache")
    return make


@pytest.fixture
def repo_copy(apk_repos, tmp_path):
    """A private copy of the repositories to tamper with, and a server for it."""
    root = tmp_path / "copy"
    shutil.copytree(apk_repos["root"], root)
    with RepositoryServer(root) as url:
        yield root, url
