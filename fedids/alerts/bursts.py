"""Streaming input: a burst that outlives a closed window keeps extending ONE alert.

File mode sees all flows at once and :func:`fedids.alerts.aggregate.aggregate` forms
bursts directly. A stream closes windows one by one, so the bursts that may still
continue (last seen less than the burst gap before the watermark) are kept here and the
groups of each newly closed window are merged into them: the alert keeps its id (the
window where the burst began) and its next version carries the grown count and
last_seen. The open bursts are saved in the outbox's meta table in the same transaction
as the alerts, so a restarted stream continues them instead of opening new alerts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fedids.alerts.aggregate import AlertGroup, continues, from_json, merge, to_json


def _name(g: AlertGroup) -> str:
    return "|".join([g.attack_class, g.src or "", g.dst or ""])


class OpenBursts:
    """Bursts that may still continue, by (class, source, destination)."""

    def __init__(self, prefix: str, gap: float, saved: Mapping[str, str]):
        self.prefix = prefix
        self.gap = gap
        self._open: dict[str, AlertGroup] = {
            k[len(prefix) :]: from_json(v) for k, v in saved.items() if k.startswith(prefix)
        }

    def __len__(self) -> int:
        return len(self._open)

    def extend(
        self, groups: Iterable[AlertGroup]
    ) -> tuple[list[AlertGroup], dict[str, str | None]]:
        """Merge newly closed groups (oldest first) into open bursts.

        Returns the groups to publish (each the latest version of its burst) and the meta
        updates that persist the open bursts.
        """
        out: dict[tuple[str, int], AlertGroup] = {}  # (pair, burst start) -> latest version
        for g in sorted(groups, key=lambda g: g.first_seen):
            name = _name(g)
            burst = self._open.get(name)
            if burst is not None and continues(burst, g, self.gap):
                g = merge(burst, g)
            self._open[name] = g
            out[(name, g.window_start)] = g
        updates: dict[str, str | None] = {
            self.prefix + name: to_json(self._open[name]) for name, _ in out
        }
        return list(out.values()), updates

    def prune(self, watermark: float) -> dict[str, str | None]:
        """Forget bursts that can no longer continue; meta deletions for them."""
        done = [n for n, g in self._open.items() if g.last_seen + self.gap < watermark]
        for n in done:
            del self._open[n]
        return {self.prefix + n: None for n in done}
