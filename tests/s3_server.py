"""A real S3-compatible server for the bucket tile store's tests: moto's standalone server.

MinIO's server is not published on the registries the project installs from (PyPI, Debian,
npm); moto's is a PyPI package (the dev extra), and its S3 keeps objects, lists and deletes
them, and refuses a PUT with ``If-None-Match: *`` over an existing key (412), which the store
relies on. It runs as its own process on a free loopback port, reached over HTTP with
botocore's signing, as a deployment reaches MinIO.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3

from idverify.store.embedded import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "idverify-test-key",
    "AWS_SECRET_ACCESS_KEY": "idverify-test-secret",
    "AWS_REGION": "us-east-1",
}
"""What botocore's chain finds in the environment: moto takes any."""


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint, and a plain client to make buckets and alter objects."""

    endpoint: str

    @property
    def client(self) -> Any:
        """A boto3 S3 client (signed requests: moto knows them as S3's at once)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=CREDENTIALS["AWS_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def make_bucket(self, bucket: str) -> None:
        """Creates ``bucket``."""
        self.client.create_bucket(Bucket=bucket)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        """Replaces an object, as anyone with write access to the bucket could."""
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def delete(self, bucket: str, key: str) -> None:
        """Deletes an object."""
        self.client.delete_object(Bucket=bucket, Key=key)

    def get(self, bucket: str, key: str) -> bytes | None:
        """An object's bytes, or None."""
        client = self.client
        try:
            return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except client.exceptions.NoSuchKey:
            return None

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object below ``prefix``, by key."""
        client = self.client
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = bytes(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        return found


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Starts moto's S3 server on a free loopback port; stops it at the end."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # its imports take seconds on a loaded machine
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.05)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        process.wait(timeout=10)
