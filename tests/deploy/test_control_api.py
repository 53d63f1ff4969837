"""What Flower 1.42's SuperLink Control API lets a stranger do (documented in docs/deploy.md).

A tripwire for the documentation: TLS authenticates the SuperLink to its clients, not the
clients to the SuperLink, and the open-source SuperLink has no account authentication (its
Control API plugin is a no-op unless Flower's enterprise package is installed). If a Flower
upgrade changes that, these tests fail and docs/deploy.md must be revised.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import requests
from flwr.proto.control_pb2 import ListRunsRequest, ListRunsResponse

from fedids.deploy.certs import make_supernode_key
from fedids.deploy.connection import write_connection
from fedids.deploy.flower import flower_bin, flower_env
from fedids.deploy.harness import Federation

pytestmark = pytest.mark.e2e


def _stranger(deployment: Federation, home: Path):
    """A machine that holds only ca.crt (public by nature) and can reach the port."""
    home.mkdir()
    shutil.copy(deployment.ca_cert, home / "ca.crt")
    write_connection(home, deployment.address, home / "ca.crt", name="stranger")
    env = flower_env(home, group=deployment.group)

    def flwr(*args: str) -> dict:
        res = subprocess.run(
            [flower_bin("flwr"), *args, "--format", "json"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        return json.loads(res.stdout)

    return flwr


def test_holder_of_ca_crt_lists_runs_and_registers_a_supernode(deployment, tmp_path):
    flwr = _stranger(deployment, tmp_path / "stranger")
    runs = flwr("ls", "stranger")
    assert runs["success"] is True and isinstance(runs["runs"], list)
    _, public = make_supernode_key(tmp_path, "intruder")
    registered = flwr("supernode", "register", str(public), "stranger")
    try:
        assert registered["success"] is True and registered["node-id"]
        listed = flwr("supernode", "list", "stranger")
        assert str(registered["node-id"]) in json.dumps(listed)
    finally:  # and may unregister any device just as well; here: its own, to leave no trace
        flwr("supernode", "unregister", str(registered["node-id"]), "stranger")


def test_without_even_ca_crt_a_client_that_skips_verification_is_answered(deployment):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning: that is the point
        response = requests.post(
            f"https://{deployment.address}/v1/control/list-runs",
            data=ListRunsRequest().SerializeToString(),
            headers={"Content-Type": "application/protobuf"},
            verify=False,
            timeout=30,
        )
    assert response.status_code == 200
    ListRunsResponse().ParseFromString(response.content)  # a real answer, not an error page
