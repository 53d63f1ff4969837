#!/usr/bin/env python
"""Bring up a real fedids federation on this machine (loopback) and optionally run it.

Why: to try the deployment path (TLS, SuperNode authentication, trusted entities and signed
app bundles, node-config, ``flwr run`` against a SuperLink, Paillier keys in ``key-dir``)
without several machines. Everything runs on free 127.0.0.1 ports with a private
``FLWR_HOME``; Ctrl-C (or SIGTERM, or the end of ``--run``) stops every process this script
started, by PID, Flower's helpers included.

    python scripts/deploy/local_federation.py --devices 2 --workdir /tmp/fedids-local \\
        --run "num-server-rounds=2 mode='paillier' hydra-overrides='dataset.rows=20000'"
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from fedids.crypto.keys import ensure_keypair, fingerprint  # noqa: E402
from fedids.deploy.connection import CONNECTION  # noqa: E402
from fedids.deploy.harness import Federation  # noqa: E402
from fedids.deploy.proctrack import sigterm_raises  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2, help="number of SuperNodes")
    parser.add_argument("--workdir", required=True, help="certificates, keys, logs, FLWR_HOME")
    parser.add_argument("--run", metavar="RUN_CONFIG", help="flwr run -c string; then exit")
    parser.add_argument("--timeout", type=float, default=1800, help="bound for --run (s)")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir).resolve()
    paillier_keys = workdir / "paillier-keys"
    public, _ = ensure_keypair(paillier_keys, 2048)
    fed = Federation(workdir)
    with sigterm_raises():
        try:
            fed.start()
            fed.add_nodes(
                list(range(args.devices)),
                args.devices,
                extra_config={"key-dir": str(paillier_keys)},
            )
            fed.wait_online(args.devices)
            spec = fed.publish(REPO)
            print(f"SuperLink {fed.address} (TLS, SuperNode auth), {args.devices} devices online")
            print(f"devices run only bundles signed by the key in {fed.trusted_file}")
            print(f"signed bundle {spec} in the registry {fed.registry.url}")
            print(f"Paillier key fingerprint {fingerprint(public)}")
            print(f"logs in {workdir}", flush=True)
            if args.run is not None:
                result = fed.run(spec, args.run, timeout=args.timeout)
                print(result.output)
                status = fed.status(result) if result.run_id else {"status": "unknown"}
                details = status.get("status-details", "")
                print(f"run {result.run_id}: {status['status']} {details}")
                return 0 if status["status"] == "finished:completed" else 1
            print("\nIn another shell:")
            print(f"  export FLWR_HOME={shlex.quote(str(fed.flwr_home))} FLWR_TELEMETRY_ENABLED=0")
            print(f'  flwr run {spec} {CONNECTION} --stream -c "..."')
            print("Ctrl-C stops the federation.", flush=True)
            while all(p.alive() for p in fed.daemons()):
                time.sleep(1)
            print("a Flower process exited; stopping", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            fed.close()


if __name__ == "__main__":
    sys.exit(main())
