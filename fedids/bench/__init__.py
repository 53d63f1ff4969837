"""What packed Paillier costs, measured against baselines in the same run (``fedids bench``).

Parts, by role:

* :mod:`fedids.bench.crypto` -- crypto only (protocol v2, no Flower): packed Paillier end to
  end, per-value python-paillier, obfuscator methods, decryption against its powmod floor,
  the FedAvg error of 10 unequal devices;
* :mod:`fedids.bench.peers` -- TenSEAL CKKS with NVFlare's settings beside packed Paillier
  on the same vectors, interleaved (optional extra ``peers``);
* :mod:`fedids.bench.rounds` -- rounds with the product's own client, plain vs Paillier;
* :mod:`fedids.bench.driver` -- :func:`run_bench` and the targets;
* :mod:`fedids.bench.report` -- the printed table.
"""

from fedids.bench.common import upload_bytes
from fedids.bench.crypto import time_naive, time_packed
from fedids.bench.driver import TARGETS, BenchSettings, run_bench
from fedids.bench.report import format_table

__all__ = [
    "TARGETS",
    "BenchSettings",
    "format_table",
    "run_bench",
    "time_naive",
    "time_packed",
    "upload_bytes",
]
