"""Fixtures of the deploy tests: a local S3-compatible server (moto in server mode) on a loopback port."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """The variables pyarrow (and so Ray Tune/Train) need to reach this server: credentials, region,
        the endpoint, and no EC2 metadata lookups."""
        return {
            "AWS_ACCESS_KEY_ID": "lossweep-test",
            "AWS_SECRET_ACCESS_KEY": "lossweep-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 (free port) with one empty bucket, for the session."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    # One log line per request otherwise floods every failing test's report.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(endpoint_url=f"http://{host}:{port}", bucket=f"lossweep-{uuid.uuid4().hex[:8]}")
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=s3.env["AWS_SECRET_ACCESS_KEY"],
            region_name=s3.env["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """``s3_server`` with its variables set in this process for the duration of one test."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server
