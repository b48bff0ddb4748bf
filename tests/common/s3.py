"""A real S3 endpoint on localhost for tests: moto's standalone server (``moto_server``).

moto_server is a test server: it keeps buckets in memory and checks no
credentials. One server runs per test session as a subprocess on a free port;
each test gets its own bucket and the standard AWS environment variables
pointing at the server, so every ``s3://`` URL the code opens (in this process
or a child) goes there over HTTP.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Credentials moto accepts; they name no real account.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Endpoint:
    url: str

    def env(self, config_dir: Path) -> dict[str, str]:
        """The environment that points botocore (and so s3fs) at this endpoint, with no
        ``~/.aws`` files read."""
        return {
            **TEST_ENV,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_CONFIG_FILE": str(config_dir / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "aws-credentials"),
        }


@dataclass(frozen=True)
class S3Bucket:
    endpoint: S3Endpoint
    name: str

    @property
    def url(self) -> str:
        return f"s3://{self.name}"

    def client(self) -> Any:
        """A boto3 client on the endpoint, for changing objects behind the store's back."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint.url, **_boto_credentials())


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": TEST_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": TEST_ENV["AWS_DEFAULT_REGION"],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(*, timeout_s: float = 120.0) -> Iterator[S3Endpoint]:
    """Run ``moto_server`` on a free localhost port until the block ends."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if exe is None:  # the lock installs it; a silent skip would pass CI without S3
        pytest.fail(
            "moto_server is not installed: ./scripts/setup.sh (or pip install 'moto[server]')"
        )
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer on {url}") from None
                time.sleep(0.2)
        yield S3Endpoint(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def new_bucket(endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch, tmp: Path) -> S3Bucket:
    """A fresh bucket, with this test's environment pointed at the endpoint."""
    for key, value in endpoint.env(tmp).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # s3fs caches its filesystems (and their botocore clients): none made before this
    # test's environment may answer for it.
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    bucket = S3Bucket(endpoint, f"fairchord-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.name)
    return bucket


def child_env(bucket: S3Bucket, tmp: Path) -> dict[str, str]:
    """``os.environ`` plus the endpoint's variables, for a subprocess."""
    return {**os.environ, **bucket.endpoint.env(tmp)}
