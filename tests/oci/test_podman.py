"""docker-archive: loads in `podman load` and runs; docker-daemon: goes through podman's Docker API."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from builder.errors import NetworkError, PybuildError
from builder.publish import open_image, parse_destination

from .conftest import need


@pytest.mark.slow
def test_docker_archive_loads_in_podman_and_runs(podman, image, tmp_path):
    archive = tmp_path / "app.tar"
    parse_destination(f"docker-archive:{archive}:pybuild-test/app:1", "x").publish(image)
    out = podman("load", "-i", str(archive))
    assert "pybuild-test/app:1" in out.stdout + out.stderr
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert f"localhost/pybuild-test/app:1 {image.config_digest.split(':')[1][:12]}" in listed
    # podman raises nofile/nproc above what a sandboxed root may set; keep them modest
    run = podman("run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                 "pybuild-test/app:1", check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hello from pybuild\n"
    user = podman("image", "inspect", "--format", "{{.Config.User}} {{.Config.WorkingDir}}", "pybuild-test/app:1")
    assert user.stdout.strip() == "65532 /workspace"


@pytest.fixture
def podman_service(podman, tmp_path, monkeypatch):
    sock = podman.root / "api.sock"
    proc = subprocess.Popen(podman.args + ["system", "service", "--time=0", f"unix://{sock}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "service.log", "wb"))
    deadline = time.time() + 30
    while not sock.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    if not sock.exists():
        proc.kill()
        pytest.fail(f"podman system service did not start: {(tmp_path / 'service.log').read_text()}")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    yield sock
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_docker_daemon_destination_through_podman_service(podman_service, podman, image):
    import docker

    where = parse_destination("docker-daemon:pybuild-test/daemon:2", "x").publish(image)
    assert where.startswith("docker-daemon:pybuild-test/daemon:2")
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    tags = [t for img in client.images.list() for t in img.tags]
    assert any(t.endswith("pybuild-test/daemon:2") for t in tags), tags
    stored = open_image("docker-daemon:pybuild-test/daemon:2")
    assert stored.config["rootfs"]["diff_ids"] == [l.diff_id for l in image.layers]
    assert stored.config["config"]["Entrypoint"] == ["/hello"]
    with pytest.raises(PybuildError, match="no such image"):
        open_image("docker-daemon:pybuild-test/absent:1")


def test_docker_daemon_unreachable_is_one_clear_error(image, tmp_path, monkeypatch):
    need("podman")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    with pytest.raises(NetworkError) as err:
        parse_destination("docker-daemon:app:1", "x").publish(image)
    assert "cannot reach the Docker API" in err.value.message and "DOCKER_HOST" in err.value.hint
