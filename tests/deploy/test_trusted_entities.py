"""Devices started with ``--trusted-entities`` run only bundles signed by a trusted key.

Real SuperLink (TLS, node auth) and SuperNodes; the bundles are a small canary app whose
ClientApp leaves a file on the device when it runs, so "did not run" is observed on the
device, not inferred. The four runs go two at a time (a canary run is light; four at once
on 2 busy cores made Flower's ServerApp processes miss their task-token deadline and
respawn in a loop):

* signed by the federation's publisher key -> runs on both devices;
* uploaded unsigned (``flwr run <dir>``, what anyone holding the Control API can do);
* signed by a key the devices do not trust;
* signed by another key that claims the trusted key's id;

the last three: every device answers Flower's ``INVALID_FAB`` error ("The FAB could not be
verified.") and no device ran a line of the bundle.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from fedids.deploy.flower import FAB_NOT_SIGNED, FAB_UNVERIFIED
from fedids.deploy.harness import Federation
from fedids.deploy.signing import generate_signing_key, key_id, load_private_key

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning"),
]
CANARY = Path(__file__).parent / "canary_app"
INVALID_FAB = 7  # flwr.app.error_code.ErrorCode.INVALID_FAB
REFUSED = {"code": INVALID_FAB, "reason": "The FAB could not be verified."}


def _canary(tmp: Path, version: str) -> Path:
    """A copy of the canary with its own version (one registry entry per signing case)."""
    app = tmp / f"canary-{version}"
    shutil.copytree(CANARY, app)
    toml = app / "pyproject.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
    return app


@pytest.fixture(scope="module")
def outcomes(deployment: Federation, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("canary")
    stranger, _ = generate_signing_key(tmp / "keys", "stranger")
    trusted_id = key_id(load_private_key(deployment.publisher_key).public_key())
    out = tmp / "out"
    apps = {
        "signed": deployment.publish(_canary(tmp, "2.0.0")),
        "unsigned": _canary(tmp, "2.0.1"),
        "foreign": deployment.publish(_canary(tmp, "2.0.2"), key=stranger),
        "forged": deployment.publish(_canary(tmp, "2.0.3"), key=stranger, claim_key_id=trusted_id),
    }
    results = {}
    for batch in (["signed", "unsigned"], ["foreign", "forged"]):
        started = time.monotonic()
        runs = {
            case: deployment.start_run(apps[case], f"out-dir='{out}'", signed=False)
            for case in batch
        }
        results.update({case: deployment.finish(run, 180, started) for case, run in runs.items()})
    marker_dir = Path(deployment.env["CANARY_MARKER_DIR"])
    doc = {}
    for case, result in results.items():
        assert result.returncode == 0 and result.run_id, f"{case}: {result.output[-3000:]}"
        report = out / f"{result.run_id}.json"
        assert report.is_file(), f"{case}: the canary ServerApp wrote nothing\n{result.output}"
        doc[case] = {
            "report": json.loads(report.read_text()),
            "ran_on": sorted(p.name for p in marker_dir.glob(f"{result.run_id}-*")),
            "status": deployment.status(result)["status"],
        }
    return doc


def test_bundle_signed_by_the_trusted_key_runs_on_every_device(outcomes) -> None:
    signed = outcomes["signed"]
    assert signed["status"] == "finished:completed"
    assert signed["report"]["nodes"] == 2
    assert [r.get("ran") for r in signed["report"]["replies"]] == [True, True], signed
    assert len(signed["ran_on"]) == 2  # the devices themselves wrote their markers


@pytest.mark.parametrize("case", ["unsigned", "foreign", "forged"])
def test_bundle_not_signed_by_a_trusted_key_does_not_run(outcomes, case: str) -> None:
    outcome = outcomes[case]
    assert outcome["report"]["nodes"] == 2
    assert [r.get("error") for r in outcome["report"]["replies"]] == [REFUSED, REFUSED], outcome
    assert outcome["ran_on"] == []  # no device executed the bundle


def test_devices_log_why_they_refused(outcomes, deployment: Federation) -> None:
    for node in deployment.nodes[:2]:
        log = node.log(tail=None)
        # unsigned upload: Flower's message is misleading ("not supported by the SuperLink")
        assert f"{FAB_NOT_SIGNED}. App verification is not supported" in log
        assert log.count(FAB_UNVERIFIED) >= 2  # foreign and forged signatures
