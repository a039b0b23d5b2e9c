"""Push to and pull from a real docker-registry on 127.0.0.1, with skopeo reading the result."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.errors import NetworkError, PybuildError, VerificationError
from builder.oci.auth import credentials_for, parse_challenge
from builder.oci.blobs import BlobStore
from builder.oci.registry import Reference, RegistryClient, insecure_allowed
from builder.publish import open_image, parse_destination

from .conftest import make_image, need, write_auth_file


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    need("skopeo")
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def remote_digest(ref: str, *extra: str) -> str:
    raw = skopeo("inspect", "--raw", "--tls-verify=false", *extra, ref).stdout
    import hashlib

    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def test_push_then_skopeo_copy_back(registry, image, tmp_path):
    where = parse_destination(f"docker://{registry.host}/team/app:1", "x").publish(image)
    assert where.startswith(f"docker://{registry.host}/team/app:1@{image.digest} (3 blobs uploaded")
    assert remote_digest(f"docker://{registry.host}/team/app:1") == image.digest
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/team/app:1", f"oci:{tmp_path / 'back'}:x")
    back = open_image(f"oci:{tmp_path / 'back'}:x")
    assert back.digest == image.digest
    assert back.config["config"]["User"] == "65532"


def test_pull_verifies_and_stores_blobs(registry, image, tmp_path):
    parse_destination(f"docker://{registry.host}/team/app:1", "x").publish(image)
    stored = open_image(f"docker://{registry.host}/team/app:1")
    assert stored.digest == image.digest
    assert [l.digest for l in stored.layers] == [l.digest for l in image.layers]
    for layer in stored.layers:
        assert layer.path.read_bytes() == image.layers[[l.digest for l in image.layers].index(layer.digest)].path.read_bytes()
    assert stored.to_image().digest == image.digest
    by_digest = open_image(f"docker://{registry.host}/team/app@{image.digest}")
    assert by_digest.digest == image.digest


def test_pull_rejects_a_tampered_blob(registry, image, tmp_path):
    parse_destination(f"docker://{registry.host}/team/app:1", "x").publish(image)
    layer = image.layers[1]
    hexd = layer.digest.split(":")[1]
    data = registry.root / "data" / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    content = bytearray(data.read_bytes())
    content[-10] ^= 0xFF
    data.write_bytes(bytes(content))
    client = RegistryClient(registry.host)
    with pytest.raises(VerificationError, match="does not match"):
        client.pull("team/app", "1", BlobStore(tmp_path / "pulled"))
    assert not BlobStore(tmp_path / "pulled").has(layer.digest)


def test_second_push_skips_existing_blobs(registry, proxy_factory, store):
    proxy = proxy_factory(registry.host)
    first = make_image(store)
    c1 = RegistryClient(proxy.host)
    c1.push_image("team/app", first, "1")
    assert c1.stats.bytes_uploaded == sum(l.size for l in first.layers) + len(first.config_bytes())
    uploads_before = proxy.count("POST", "/blobs/uploads/")
    assert uploads_before == 3

    second = make_image(store, text="print('changed')\n")
    c2 = RegistryClient(proxy.host)
    c2.push_image("team/app", second, "2")
    new_uploads = proxy.count("POST", "/blobs/uploads/") - uploads_before
    assert new_uploads == 2  # the app layer and the config; the base layer is skipped after HEAD
    assert c2.stats.skipped == [first.layers[0].digest]
    assert c2.stats.bytes_uploaded == second.layers[1].size + len(second.config_bytes())

    c3 = RegistryClient(proxy.host)
    c3.push_image("team/app", second, "2")
    assert proxy.count("POST", "/blobs/uploads/") - uploads_before == 2  # nothing new travels
    assert c3.stats.bytes_uploaded == 0 and len(c3.stats.skipped) == 3


def test_cross_repository_mount(registry, proxy_factory, image):
    proxy = proxy_factory(registry.host)
    RegistryClient(proxy.host).push_image("team/base", image, "1")
    client = RegistryClient(proxy.host)
    client.push_image("other/app", image, "1")
    assert sorted(client.stats.mounted) == sorted([l.digest for l in image.layers] + [image.config_digest])
    assert client.stats.bytes_uploaded == 0
    assert proxy.count("POST", "mount=") == 3
    assert remote_digest(f"docker://{registry.host}/other/app:1") == image.digest
    cache = json.loads((Path(os.environ["PYBUILD_CACHE_DIR"]) / "registry-blobs.json").read_text())
    assert set(cache[proxy.host][image.layers[0].digest]) == {"team/base", "other/app"}


def test_chunked_upload(registry, proxy_factory, image):
    proxy = proxy_factory(registry.host)
    client = RegistryClient(proxy.host, chunk_size=4096)
    client.push_image("team/chunked", image, "1")
    big = image.layers[1].size
    assert big > 4096
    assert proxy.count("PATCH") >= -(-big // 4096)
    assert remote_digest(f"docker://{registry.host}/team/chunked:1") == image.digest


@pytest.mark.parametrize("chunk_size", [8192, None], ids=["chunked", "monolithic"])
def test_push_through_faults(registry, proxy_factory, store, chunk_size, tmp_path):
    proxy = proxy_factory(registry.host, fault_rate=0.25, seed=11)
    image = make_image(store)
    client = RegistryClient(proxy.host, chunk_size=chunk_size, backoff=0.01)
    digest = client.push_image("team/faulty", image, "1")
    assert digest == image.digest
    faults = [w for _, _, w in proxy.log if w in ("503", "429", "reset-before", "reset-after")]
    assert len(faults) >= 3, proxy.log
    assert client.stats.retries + client.stats.resumed + client.stats.restarted >= 1
    assert remote_digest(f"docker://{registry.host}/team/faulty:1") == image.digest
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry.host}/team/faulty:1", f"oci:{tmp_path / 'b'}:x")
    assert open_image(f"oci:{tmp_path / 'b'}:x").digest == image.digest


def test_pull_through_faults(registry, proxy_factory, image, tmp_path):
    parse_destination(f"docker://{registry.host}/team/app:1", "x").publish(image)
    proxy = proxy_factory(registry.host, fault_rate=0.3, seed=5)
    client = RegistryClient(proxy.host, backoff=0.01)
    stored = client.pull("team/app", "1", BlobStore(tmp_path / "pulled"))
    assert stored.digest == image.digest


def test_htpasswd_basic_auth(auth_registry, image, tmp_path, monkeypatch):
    dest = parse_destination(f"docker://{auth_registry.host}/team/app:1", "x")
    with pytest.raises(PybuildError) as err:
        dest.publish(image)
    assert "401" in err.value.message and auth_registry.host in err.value.message
    assert "REGISTRY_AUTH_FILE" in err.value.hint and "login" in err.value.hint

    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(write_auth_file(tmp_path / "bad.json", auth_registry.host,
                                                                 "tester", "wrong")))
    with pytest.raises(PybuildError, match="401"):
        parse_destination(f"docker://{auth_registry.host}/team/app:1", "x").publish(image)

    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(write_auth_file(tmp_path / "auth.json", auth_registry.host,
                                                                 "tester", "s3cret")))
    parse_destination(f"docker://{auth_registry.host}/team/app:1", "x").publish(image)
    assert remote_digest(f"docker://{auth_registry.host}/team/app:1", "--creds", "tester:s3cret") == image.digest
    assert open_image(f"docker://{auth_registry.host}/team/app:1").digest == image.digest


def test_bearer_token_challenge(registry, proxy_factory, image, tmp_path, monkeypatch):
    proxy = proxy_factory(registry.host, bearer=("robot", "t0ken-pass"))
    with pytest.raises(PybuildError, match="refused the credentials"):
        RegistryClient(proxy.host).push_image("team/app", image, "1")
    docker_config = Path(os.environ["DOCKER_CONFIG"])
    docker_config.mkdir(parents=True, exist_ok=True)
    write_auth_file(docker_config / "config.json", proxy.host, "robot", "t0ken-pass")
    RegistryClient(proxy.host).push_image("team/app", image, "1")
    assert proxy.tokens
    assert open_image(f"docker://{proxy.host}/team/app:1").digest == image.digest


def test_multi_platform_index(registry, store, tmp_path):
    amd, arm = make_image(store), make_image(store, text="arm\n", arch="arm64")
    dest = parse_destination(f"docker://{registry.host}/team/multi:1", "x")
    where = dest.publish_index([amd, arm])
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/team/multi:1").stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"]["architecture"] for m in raw["manifests"]] == ["amd64", "arm64"]
    assert remote_digest(f"docker://{registry.host}/team/multi:1") in where
    assert open_image(f"docker://{registry.host}/team/multi:1", "linux/arm64").digest == arm.digest
    assert open_image(f"docker://{registry.host}/team/multi:1", "linux/amd64").digest == amd.digest
    with pytest.raises(PybuildError, match="no image for platform"):
        open_image(f"docker://{registry.host}/team/multi:1", "linux/s390x")


def test_tls_verified_with_the_given_ca(tmp_path, image, monkeypatch):
    need("docker-registry")
    need("openssl")
    from .servers import RegistryServer

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    (tmp_path / "reg").mkdir()
    server = RegistryServer(tmp_path / "reg", tls=(cert, key))
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        client = RegistryClient(server.host)
        client.push_image("team/tls", image, "1")
        assert client.base.startswith("https://") and client._verify is True
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        loopback = RegistryClient(server.host)  # loopback may use a cert nobody vouches for
        assert loopback.pull("team/tls", "1", BlobStore(tmp_path / "pulled")).digest == image.digest
        assert loopback.base.startswith("https://") and loopback._verify is False
    finally:
        server.stop()


def test_unreachable_registry_is_one_clear_error(image):
    from .conftest import free_port

    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(NetworkError) as err:
        parse_destination(f"docker://{host}/team/app:1", "x").publish(image)
    assert f"cannot reach registry {host}" in err.value.message
    assert "PYBUILD_INSECURE_REGISTRIES" in err.value.hint


def test_missing_image_is_one_clear_error(registry):
    with pytest.raises(PybuildError) as err:
        open_image(f"docker://{registry.host}/team/nothing:1")
    assert "404" in err.value.message and "team/nothing:1" in err.value.message


def test_plain_http_only_for_loopback_or_listed(monkeypatch):
    assert insecure_allowed("127.0.0.1:5000") and insecure_allowed("localhost:5000") and insecure_allowed("[::1]:5000")
    assert insecure_allowed("127.8.9.10")
    assert not insecure_allowed("registry.test:5000") and not insecure_allowed("10.0.0.1:5000")
    monkeypatch.setenv("PYBUILD_INSECURE_REGISTRIES", "registry.test:5000, other.test")
    assert insecure_allowed("registry.test:5000") and insecure_allowed("other.test:443")
    assert not insecure_allowed("third.test")


def test_reference_parsing():
    r = Reference.parse("//localhost:5000/team/app:2")
    assert (r.host, r.repo, r.tag) == ("localhost:5000", "team/app", "2")
    r = Reference.parse("//localhost:5000/team/app", "app:9")
    assert r.tag == "9"
    r = Reference.parse("//registry.test/app@sha256:" + "a" * 64)
    assert r.digest and r.reference == r.digest
    assert str(Reference.parse("//registry.test/a/b")) == "docker://registry.test/a/b:latest"


def test_credentials_from_config_files(tmp_path, monkeypatch):
    cfg_dir = Path(os.environ["DOCKER_CONFIG"])
    cfg_dir.mkdir(parents=True, exist_ok=True)
    write_auth_file(cfg_dir / "config.json", "registry.test", "alice", "pw1")
    assert credentials_for("registry.test").username == "alice"
    assert credentials_for("other.test").anonymous

    (cfg_dir / "config.json").write_text(json.dumps({"auths": {"https://registry.test/v1/": {"identitytoken": "rt"}}}))
    assert credentials_for("registry.test").identity_token == "rt"

    helper_bin = tmp_path / "bin"
    helper_bin.mkdir()
    helper = helper_bin / "docker-credential-pbtest"
    helper.write_text("#!/bin/sh\nread host\nif [ \"$host\" = other.test ]; then "
                      "echo '{\"Username\":\"bob\",\"Secret\":\"pw2\"}'; else echo 'credentials not found in native keychain'; exit 1; fi\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper_bin}:{os.environ['PATH']}")
    (cfg_dir / "config.json").write_text(json.dumps({"credHelpers": {"other.test": "pbtest"}}))
    creds = credentials_for("other.test")
    assert (creds.username, creds.password) == ("bob", "pw2")
    (cfg_dir / "config.json").write_text(json.dumps({"credsStore": "pbtest"}))
    assert credentials_for("other.test").username == "bob"
    assert credentials_for("registry.test").anonymous
    (cfg_dir / "config.json").write_text(json.dumps({"credHelpers": {"x.test": "absent"}}))
    with pytest.raises(PybuildError, match="docker-credential-absent is not on PATH"):
        credentials_for("x.test")

    auth_file = write_auth_file(tmp_path / "auth.json", "registry.test/team", "carol", "pw3")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    assert credentials_for("registry.test", "team/app").username == "carol"


def test_parse_challenge():
    scheme, params = parse_challenge('Bearer realm="https://auth.test/token",service="reg",scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.test/token", "service": "reg", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_uploads_run_in_parallel(registry, proxy_factory, image):
    proxy = proxy_factory(registry.host, delay=0.3)
    RegistryClient(proxy.host, workers=4).push_image("team/parallel", image, "1")
    assert proxy.max_in_flight >= 2


def test_chunked_upload_resumes_where_the_registry_stopped(registry, proxy_factory, image):
    proxy = proxy_factory(registry.host, script={("PATCH", 2): "reset-before", ("PATCH", 4): "503"})
    client = RegistryClient(proxy.host, chunk_size=4096, workers=1, backoff=0.01)
    assert client.push_image("team/resume", image, "1") == image.digest
    assert (client.stats.resumed, client.stats.restarted) == (2, 0)
    assert proxy.count("GET", "/blobs/uploads/") == 2
    assert remote_digest(f"docker://{registry.host}/team/resume:1") == image.digest


def test_chunk_lost_after_arrival_restarts_that_blob(registry, proxy_factory, image):
    # the registry got the chunk but the answer was lost: docker-registry drops such an upload on the next
    # request, so the client checks the blob is still missing and uploads it again
    proxy = proxy_factory(registry.host, script={("PATCH", 2): "reset-after"})
    client = RegistryClient(proxy.host, chunk_size=4096, workers=1, backoff=0.01)
    assert client.push_image("team/lost", image, "1") == image.digest
    assert client.stats.restarted == 1
    assert remote_digest(f"docker://{registry.host}/team/lost:1") == image.digest


def test_identity_token_refresh_grant(registry, proxy_factory, image):
    proxy = proxy_factory(registry.host, bearer=("robot", "unused"), refresh_token="refresh-123")
    config = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    config.write_text(json.dumps({"auths": {proxy.host: {"identitytoken": "refresh-123"}}}))
    RegistryClient(proxy.host).push_image("team/app", image, "1")
    assert proxy.tokens
    assert remote_digest(f"docker://{registry.host}/team/app:1") == image.digest


def test_pulled_base_layers_are_mounted_into_a_new_repository(registry, proxy_factory, image, store, tmp_path,
                                                              monkeypatch):
    from .conftest import app_layer

    parse_destination(f"docker://{registry.host}/base/run:1", "x").publish(image)
    monkeypatch.setenv("PYBUILD_CACHE_DIR", str(tmp_path / "fresh-cache"))  # only the pull below is known
    proxy = proxy_factory(registry.host)
    base = open_image(f"docker://{proxy.host}/base/run:1").to_image()
    app = base.with_layers(app_layer(store, "print('on top')\n"))
    client = RegistryClient(proxy.host)
    assert client.push_image("team/app", app, "1") == app.digest
    assert set(client.stats.mounted) == {l.digest for l in image.layers}
    assert client.stats.bytes_uploaded == app.layers[-1].size + len(app.config_bytes())


def test_pull_docker_schema2_manifest_and_list(registry, store, tmp_path):
    amd, arm = make_image(store), make_image(store, text="arm\n", arch="arm64")
    parse_destination(f"docker://{registry.host}/team/multi:1", "x").publish_index([amd, arm])
    skopeo("copy", "--all", "--format", "v2s2", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{registry.host}/team/multi:1", f"docker://{registry.host}/team/docker:1")
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/team/docker:1").stdout)
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    arm_pulled = open_image(f"docker://{registry.host}/team/docker:1", "linux/arm64")
    assert arm_pulled.manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert arm_pulled.config["architecture"] == "arm64"
    assert arm_pulled.config["rootfs"]["diff_ids"] == [l.diff_id for l in arm.layers]
    # a pulled Docker image can be the base of a new OCI image pushed elsewhere
    client = RegistryClient(registry.host)
    rebased = arm_pulled.to_image()
    assert client.push_image("team/rebased", rebased, "1") == rebased.digest
    assert remote_digest(f"docker://{registry.host}/team/rebased:1") == rebased.digest


def test_registry_with_token_auth(tmp_path, image, monkeypatch):
    """docker-registry's own `auth: token`: it checks the JWTs our token service signs."""
    need("docker-registry")
    pytest.importorskip("cryptography")
    from .servers import RegistryServer, TokenServer

    (tmp_path / "reg").mkdir()
    tokens = TokenServer(tmp_path / "reg", "builder", "pw-42")
    server = RegistryServer(tmp_path / "reg", token_auth=tokens.registry_auth())
    try:
        with pytest.raises(PybuildError) as err:  # anonymous: a pull-only token, so the push is refused
            RegistryClient(server.host).push_image("team/app", image, "1")
        assert server.host in err.value.message and err.value.hint
        write_auth_file(Path(os.environ["DOCKER_CONFIG"]) / "config.json", server.host, "builder", "pw-42")
        client = RegistryClient(server.host)
        assert client.push_image("team/app", image, "1") == image.digest
        other = RegistryClient(server.host)
        other.push_image("team/copy", image, "1")
        assert len(other.stats.mounted) == 3  # the mount asked for pull on team/app and push on team/copy
        assert open_image(f"docker://{server.host}/team/copy:1").digest == image.digest
        assert tokens.issued >= 3
        digest = remote_digest(f"docker://{server.host}/team/app:1", "--creds", "builder:pw-42")
        assert digest == image.digest
    finally:
        server.stop()
        tokens.stop()
