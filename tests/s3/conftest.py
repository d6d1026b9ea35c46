"""A real S3 API (moto's server) on 127.0.0.1 for the whole session; each test gets its own prefix."""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid

import pytest

CONN_ID = "batch_s3_test"
BUCKET = "batch-test"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conn_json(endpoint: str, **config_kwargs) -> str:
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    if config_kwargs:
        extra["config_kwargs"] = config_kwargs
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


@pytest.fixture(scope="session")
def moto_endpoint():
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**AWS_ENV, f"AIRFLOW_CONN_{CONN_ID.upper()}": conn_json(endpoint)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_client(moto_endpoint):
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint)


@pytest.fixture
def s3_prefix(s3_client):
    """``bucket/prefix`` for one test; every object under it is deleted afterwards."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    yield f"{BUCKET}/{prefix}"
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    for page in pages:
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3_client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})


def s3_keys(client, bucket_prefix: str) -> list[str]:
    bucket, prefix = bucket_prefix.split("/", 1)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1 :] for p in pages for o in p.get("Contents", []))
