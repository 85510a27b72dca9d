"""A sandbox served over HTTPS with a self-signed certificate the job's git does not trust.

The runner itself trusts the certificate (``REQUESTS_CA_BUNDLE`` for its API calls), as a
runner whose host store was patched would, so it gets the job; the job's git clone does not,
and fails the way git does. doctor quotes git's line and its TLS probe, run on the host with
the system store because config.toml names no ``tls-ca-file``, confirms it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.sandbox.server import start_background
from provisioner.sandbox_runner import RunnerHandle
from tests.conftest import Cli
from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox_runner.conftest import Lab

pytestmark = pytest.mark.sandbox


@pytest.fixture
def tls_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Lab, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    handle = start_background(tmp_path / "data", port=0, tls_cert=cert, tls_key=key)
    try:
        assert handle.url.startswith("https://")
        sandbox = RunningSandbox(handle.url, handle.root_token, handle.data_dir, handle)
        yield Lab(sandbox=sandbox, tmp=tmp_path), cert
    finally:
        handle.stop()


def test_self_signed_certificate_is_confirmed_by_the_tls_probe(
    tls_lab: tuple[Lab, Path], cli: Cli
) -> None:
    lab, cert = tls_lab
    handles: list[RunnerHandle] = []
    try:
        config = lab.config()
        tag = lab.sandbox.unique("doc-tls")
        lab.register(config, tags=(tag,))
        project = lab.project(f"job:\n  tags: [{tag}]\n  script: [echo never]\n")
        pipeline = lab.run_pipeline(project)
        handles.append(lab.start(config, once=True))
        assert handles[-1].wait(60)
        job = lab.jobs(project, pipeline.id)["job"]
        assert job.status == "failed"
    finally:
        for handle in handles:
            handle.stop(force=True, timeout=5)
    code, out, err = cli(
        "doctor",
        f"{project.path_with_namespace}#{job.id}",
        "--config",
        str(config),
        "-o",
        "json",
        env={"GITLAB_URL": lab.sandbox.url, "GITLAB_TOKEN": lab.sandbox.root_token},
    )
    assert code == 10, err
    document = json.loads(out)
    best = document["findings"][0]
    # Debian's git speaks GnuTLS; git built on OpenSSL says "SSL certificate problem: …".
    assert best["id"] == "gnutls-verification-failed"
    assert best["category"] == "TLS/certs"
    assert "server certificate verification failed. CAfile: " in best["evidence"]["text"]
    assert best["confidence"] == "probe-confirmed"
    tls = next(p for p in best["probes"] if p["probe"] == "tls@host")
    assert tls["confirms"]
    assert "certificate issuer: commonName=127.0.0.1" in tls["evidence"]
    assert cert.exists()
