"""The weights the Kubernetes routers share: two weighted entries (stable and canary) in a
list of a custom object, found, read as a split and rewritten as JSON patch ops; and the
Router methods built on them. No cluster access here (kube.py does that)."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from canary.errors import RouterError
from canary.model import Weights

if TYPE_CHECKING:
    from canary.routers.kube import KubeObjects, ObjectRef, Patch


@dataclass(frozen=True)
class WeightedPair:
    """Where the stable and canary weights live in an object, and what they hold now.

    ``stable_raw``/``canary_raw`` are the values as stored (None when the field is
    absent); ``default`` is what the API takes for an absent weight.
    """

    pointer: str  # JSON pointer of the list holding both entries
    stable_index: int
    canary_index: int
    stable_raw: int | None
    canary_raw: int | None
    default: int
    where: str  # e.g. "HTTPRoute shop/checkout rule 0", for messages

    def split(self) -> Weights:
        stable = self.default if self.stable_raw is None else self.stable_raw
        canary = self.default if self.canary_raw is None else self.canary_raw
        if stable + canary <= 0:
            raise RouterError(f"{self.where}: stable and canary both have weight 0, so the "
                              "route sends traffic nowhere; set a split before a rollout")
        return Weights(canary=round(100 * canary / (stable + canary)))

    def ops(self, weights: Weights) -> Patch:
        """The ``add`` ops that make the stored weights ``weights`` (none if they already are)."""
        out: Patch = []
        for index, raw, want in ((self.stable_index, self.stable_raw, weights.stable),
                                 (self.canary_index, self.canary_raw, weights.canary)):
            if raw != want:  # "add" replaces an existing member and creates a missing one
                out.append({"op": "add", "path": f"{self.pointer}/{index}/weight", "value": want})
        return out


def find_pair(entries: Any, *, pointer: str, where: str, default: int,
              is_stable: Callable[[dict[str, Any]], bool],
              is_canary: Callable[[dict[str, Any]], bool],
              label: Callable[[dict[str, Any]], str],
              stable_name: str, canary_name: str) -> WeightedPair:
    """Find exactly one stable and one canary entry in ``entries``; RouterError otherwise.

    Any other entry must carry weight 0: a third weighted backend would take a share of
    traffic canary does not control, and the percentages it reports would be false.
    """
    items = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    found = ", ".join(label(e) for e in items) or "none"
    stable = [i for i, e in enumerate(items) if is_stable(e)]
    canary = [i for i, e in enumerate(items) if is_canary(e)]
    for name, hits in ((stable_name, stable), (canary_name, canary)):
        if not hits:
            raise RouterError(f"{where}: no entry for {name} (found: {found}); check the "
                              "names in the router block against the object")
        if len(hits) > 1:
            raise RouterError(f"{where}: {name} appears {len(hits)} times; canary needs "
                              "exactly one entry for it")
    for i, entry in enumerate(items):
        weight = raw_weight(entry, where)
        if i not in (stable[0], canary[0]) and (default if weight is None else weight) > 0:
            raise RouterError(f"{where}: {label(entry)} also takes traffic; canary can only "
                              f"split between {stable_name} and {canary_name}")
    return WeightedPair(
        pointer=pointer, stable_index=stable[0], canary_index=canary[0],
        stable_raw=raw_weight(items[stable[0]], where),
        canary_raw=raw_weight(items[canary[0]], where), default=default, where=where,
    )


def raw_weight(entry: dict[str, Any], where: str) -> int | None:
    value = entry.get("weight")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 0):
        raise RouterError(f"{where}: weight {value!r} is not a non-negative integer")
    return value


class WeightedObjectRouter(abc.ABC):
    """The Router methods, for an adapter that supplies ``ref``, ``locate`` and ``describe``.

    Every method reads the live object: get_weights reports what the cluster holds, and
    set_weights recomputes its patch from a fresh read on each attempt.
    """

    def __init__(self, ref: ObjectRef, objects: KubeObjects) -> None:
        self.ref = ref
        self._objects = objects

    @abc.abstractmethod
    def locate(self, obj: dict[str, Any]) -> WeightedPair:
        """The stable and canary entries in ``obj``; RouterError saying what is missing."""

    @abc.abstractmethod
    def describe(self) -> str: ...

    def ensure(self) -> None:
        self.locate(self._objects.get(self.ref))

    def set_weights(self, weights: Weights) -> None:
        self._objects.update(self.ref, lambda obj: self.locate(obj).ops(weights))

    def get_weights(self) -> Weights:
        return self.locate(self._objects.get(self.ref)).split()

    def close(self) -> None:
        """Release the client's connections (not part of the Router port)."""
        self._objects.close()
