"""The WUSTL-IIoT-2021 flow schema, in one place.

Loaders validate files against these lists, the synthetic generator writes exactly
these columns, and the model's feature order comes from :data:`WUSTL_FEATURES`. Keeping
them here (and nowhere else) means a file, a model and an alert always agree on what
column 17 is.
"""

from __future__ import annotations

#: All 49 columns of the published CSV, in file order.
WUSTL_COLUMNS: list[str] = [
    "StartTime", "LastTime", "SrcAddr", "DstAddr", "Mean", "Sport", "Dport",
    "SrcPkts", "DstPkts", "TotPkts", "DstBytes", "SrcBytes", "TotBytes",
    "SrcLoad", "DstLoad", "Load", "SrcRate", "DstRate", "Rate",
    "SrcLoss", "DstLoss", "Loss", "pLoss", "SrcJitter", "DstJitter",
    "SIntPkt", "DIntPkt", "Proto", "Dur", "TcpRtt", "IdleTime",
    "Sum", "Min", "Max", "sDSb", "sTtl", "dTtl", "sIpId", "dIpId",
    "SAppBytes", "DAppBytes", "TotAppByte", "SynAck", "RunTime", "sTos",
    "SrcJitAct", "DstJitAct", "Traffic", "Target",
]  # fmt: skip

#: Columns the dataset's authors say to drop before training: they identify the
#: testbed's hosts and capture times, so a model would learn the testbed, not attacks.
#: Alerts still name addresses and ports; they are only kept out of the features.
WUSTL_DROP: list[str] = ["StartTime", "LastTime", "SrcAddr", "DstAddr", "sIpId", "dIpId"]

#: Label columns: ``Traffic`` is the attack class (text), ``Target`` is 0 normal / 1 attack.
WUSTL_LABEL_COLUMN = "Traffic"
WUSTL_TARGET_COLUMN = "Target"
WUSTL_LABELS: list[str] = [WUSTL_LABEL_COLUMN, WUSTL_TARGET_COLUMN]

#: The 41 model features, in file order (49 columns - 6 dropped - 2 labels).
WUSTL_FEATURES: list[str] = [
    c for c in WUSTL_COLUMNS if c not in WUSTL_DROP and c not in WUSTL_LABELS
]

#: Columns of a WUSTL file that hold text rather than numbers.
WUSTL_TEXT_COLUMNS: list[str] = ["SrcAddr", "DstAddr", WUSTL_LABEL_COLUMN]

#: Multi-class labels (values of ``Traffic``), benign first: index 0 is always "normal".
WUSTL_CLASSES: list[str] = ["normal", "DoS", "Reconn", "CommInj", "Backdoor"]

#: Records per class in the published dataset (1,194,464 in all, 92.7 % normal).
WUSTL_CLASS_COUNTS: dict[str, int] = {
    "normal": 1_107_448,
    "DoS": 78_305,
    "Reconn": 8_240,
    "CommInj": 259,
    "Backdoor": 212,
}
WUSTL_TOTAL_RECORDS: int = sum(WUSTL_CLASS_COUNTS.values())

#: Binary classification: benign vs every attack class (used for every dataset).
BINARY_CLASSES: list[str] = ["normal", "attack"]

#: Classification types a dataset can be loaded for.
CLASSIFICATIONS: tuple[str, ...] = ("binary", "multi")

if len(WUSTL_COLUMNS) != 49 or len(set(WUSTL_COLUMNS)) != 49:  # pragma: no cover - edit guard
    raise AssertionError("WUSTL_COLUMNS must list 49 distinct columns")
if len(WUSTL_FEATURES) != 41:  # pragma: no cover - edit guard
    raise AssertionError("WUSTL_FEATURES must list 41 features")
