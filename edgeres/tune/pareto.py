"""The Pareto front of the measured candidates (val top-1 up, p50 down, size down), the choice (the
fastest within the accuracy budget) and, for every other candidate, why it lost."""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]  # one candidate's record (``step``): name, status, val_top1, val_drop_pp, p50_ms, ...


def _scored(records: list[Record]) -> list[Record]:
    return [r for r in records if r["status"] == "measured" and r.get("p50_ms") is not None]


def dominates(a: Record, b: Record) -> bool:
    """``a`` is at least as accurate, as fast and as small as ``b``, and better in one of them."""
    at_least = a["val_top1"] >= b["val_top1"] and a["p50_ms"] <= b["p50_ms"] and a["size_bytes"] <= b["size_bytes"]
    better = a["val_top1"] > b["val_top1"] or a["p50_ms"] < b["p50_ms"] or a["size_bytes"] < b["size_bytes"]
    return at_least and better


def front(records: list[Record]) -> list[Record]:
    """The measured candidates no other one dominates, fastest first."""
    scored = _scored(records)
    return sorted((r for r in scored if not any(dominates(o, r) for o in scored)), key=lambda r: r["p50_ms"])


def choose(records: list[Record], max_drop: float) -> Record | None:
    """The fastest measured candidate whose val drop is within ``max_drop``; ties go to the more accurate,
    then the smaller. None when no candidate keeps the budget."""
    within = [r for r in _scored(records) if r["val_drop_pp"] <= max_drop]
    return min(within, key=lambda r: (r["p50_ms"], -r["val_top1"], r["size_bytes"])) if within else None


def explain(records: list[Record], chosen: Record | None, max_drop: float) -> None:
    """Fill every record's ``why`` (why it is not the chosen one) and ``on_front``."""
    on_front = {r["name"] for r in front(records)}
    scored = _scored(records)
    for r in records:
        r["on_front"] = r["name"] in on_front
        if r is chosen:
            r["why"] = "chosen: the fastest within the budget"
            continue
        if r["status"] != "measured":
            r["why"] = r.get("reason") or r["status"]
            continue
        reasons = []
        if r["val_drop_pp"] > max_drop:
            reasons.append(f"over budget: val drop {r['val_drop_pp']:.2f} pp > {max_drop:g} pp")
        elif chosen is not None:
            reasons.append(f"slower: p50 {r['p50_ms']:.3g} ms vs {chosen['p50_ms']:.3g} ms")
        if not r["on_front"]:
            by = next(o for o in scored if dominates(o, r))
            reasons.append(f"dominated by {by['name']}")
        r["why"] = "; ".join(reasons)
