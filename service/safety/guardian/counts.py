"""Per-link message counts for a guardian's overview: how many messages a
linked child sent to each contact per day, counted for each guardian only
from that guardian's link time on (consent given today does not open the
child's past). Counts only, never content; memory only."""

from __future__ import annotations

from collections.abc import Callable, Mapping

# Days kept before the day just counted: the overview's week, and a margin.
_KEEP_DAYS = 8


class LinkCounts:
    """Linked child -> guardian -> (contact, UTC day number) -> messages
    sent while that guardian was linked. Not locked: the registry's lock
    guards every call."""

    def __init__(self) -> None:
        self._by_child: dict[int, dict[str, dict[tuple[int, int], int]]] = {}

    def observe(self, sender: int, recipient: int, when: float, links: Mapping[str, float]) -> None:
        """Count a message ``sender`` sent at ``when`` for each guardian in
        ``links`` (guardian -> link time) linked at or before ``when``."""
        day = int(when // 86400)
        for guardian, since in links.items():
            if when < since:
                continue
            counts = self._by_child.setdefault(sender, {}).setdefault(guardian, {})
            counts[(recipient, day)] = counts.get((recipient, day), 0) + 1
            horizon = day - _KEEP_DAYS
            for key in [k for k in counts if k[1] < horizon]:
                del counts[key]

    def days(self, child: int, guardian: str, first_day: int) -> dict[int, dict[int, int]]:
        """Contact -> {day number: messages} from ``first_day`` on, as
        counted for ``guardian``."""
        out: dict[int, dict[int, int]] = {}
        for (contact, day), n in self._by_child.get(child, {}).get(guardian, {}).items():
            if day >= first_day:
                out.setdefault(contact, {})[day] = n
        return out

    def forget_link(self, child: int, guardian: str) -> None:
        """A link made or ended: that guardian's counts start again."""
        self._by_child.get(child, {}).pop(guardian, None)

    def user_ids(self) -> set[int]:
        """Every child and contact the counts name."""
        return set(self._by_child).union(
            contact for per_link in self._by_child.values() for counts in per_link.values() for contact, _ in counts)

    def forget_users(self, erased: set[int]) -> None:
        """Drop the counts of erased children and those naming erased
        contacts."""
        for child in erased & self._by_child.keys():
            del self._by_child[child]
        for per_link in self._by_child.values():
            for counts in per_link.values():
                for k in [k for k in counts if k[0] in erased]:
                    del counts[k]

    def keep_links(self, links_of: Callable[[int], Mapping[str, float]]) -> None:
        """Drop the counts of guardians no longer linked to their child (an
        erased guardian's go with its id: its pseudonym cannot read an
        overview)."""
        for child, per_link in self._by_child.items():
            links = links_of(child)
            for guardian in [g for g in per_link if g not in links]:
                del per_link[guardian]
