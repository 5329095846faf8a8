"""A fleet: ``edgeres bench --device A --device B ...`` measures several devices into one report.

Each device is benched as ``edgeres bench --device X`` would (its own ``bench`` artifact, its rows' rounds
one after another on it, beside a baseline measured here just before), the devices one after another so
that no device's work, nor its baseline, shares this host's cores with another's. A device that fails as a
whole (unreachable, every row failed, dropped in its first round) is reported and the next one goes on;
one that drops in a later round keeps the rounds it finished, with a warning (``latency_rounds``). The
fleet's report is one more ``bench`` artifact: the first device's baseline row, then every device's rows,
each with its device in ``group`` (and ``where``), and ``fleet`` saying per device what became of it.
"""

from __future__ import annotations

from typing import Any

from edgeres import devices
from edgeres.bench.request import BenchRequest, BenchResult
from edgeres.bench.run import run_bench
from edgeres.console import say
from edgeres.errors import EdgeresError
from edgeres.workspace import Workspace


def run_fleet(req: BenchRequest, names: list[str], ws: Workspace) -> BenchResult:
    """Bench every device of ``names`` in turn and save one combined ``bench`` artifact. Profiles are all
    read before anything runs (a typo is one error, at once); it is an error only when no device could
    be benched."""
    if len(set(names)) != len(names):
        raise EdgeresError(f"a device is named twice: {', '.join(names)}", hint="name each device once")
    for name in names:
        devices.get(name, req.devices_dir)
    done: list[BenchResult] = []
    fleet: list[dict[str, Any]] = []
    for i, name in enumerate(names, 1):
        say(f"[bold]device {i}/{len(names)}:[/] {name}")
        try:
            result = run_bench(req.model_copy(update={"device": name}), ws)
        except EdgeresError as exc:
            say(f"[red]failed[/] device {name}: {exc.args[0]}; going on with the others")
            fleet.append({"device": name, "status": "failed", "artifact": None, "error": exc.args[0]})
            continue
        done.append(result)
        failed = sum(r["status"] == "failed" for r in result.rows)
        fleet.append({"device": result.results["device"]["name"], "status": "measured", "artifact": result.artifact.id,
                      "error": None, "failed_rows": failed})
    if not done:
        raise EdgeresError("no device of the fleet could be benched: " + "; ".join(
            f"{f['device']}: {f['error']}" for f in fleet), hint="`edgeres devices` says which can be used now")
    roots = {r.results["root"] for r in done}
    if len(roots) > 1:
        raise EdgeresError(f"the devices measured different models ({', '.join(sorted(roots))}): one report needs one",
                           hint="name the model: --model ARTIFACT")
    results = combine([r.results for r in done], fleet)
    root = ws.resolve(results["root"])
    config = req.model_dump(mode="json") | {"devices": names}
    fields = {k: v for k, v in results.items() if k not in ("model", "dataset")}
    from edgeres import report

    with ws.create("bench", model=results["model"], dataset=results["dataset"], parent=root, config=config,
                   **fields) as art:
        report.save(results, art.dir)
    assert art.artifact is not None
    bad = [f for f in fleet if f["status"] == "failed"]
    say(f"fleet: {len(done)} of {len(names)} device(s) benched" + (
        "; failed: " + ", ".join(f["device"] for f in bad) if bad else ""))
    return BenchResult(art.artifact, results)


def combine(each: list[dict[str, Any]], fleet: list[dict[str, Any]]) -> dict[str, Any]:
    """One results document from several devices' (all of one model): the first one's baseline row and
    method, every device's variant rows tagged with their device (``group``), and warnings and skipped
    variants named by device. Each row's ratios stay those of its own device's run."""
    first = each[0]
    rows = [{**first["rows"][0], "group": "this host"}]
    warnings, skipped = [], []
    for results in each:
        name = results["device"]["name"]
        rows += [{**row, "group": name} for row in results["rows"][1:]]
        warnings += [f"{name}: {w}" for w in results["warnings"]]
        skipped += [{**s, "variant": f"{name}: {s['variant']}"} for s in results["skipped"]]
    warnings += [f"device {f['device']} failed: {f['error']}" for f in fleet if f["status"] == "failed"]
    modes = {r["mode"] for r in each}
    return {
        **{k: first[k] for k in ("results_format", "model", "dataset", "root", "baseline", "host", "method", "eval")},
        "device": {"name": "fleet", "description": f"{len(fleet)} devices: {', '.join(f['device'] for f in fleet)}",
                   "arch": ", ".join(sorted({r['device']['arch'] for r in each})),
                   "connection": "; ".join(f"{r['device']['name']}: {r['device']['connection']}" for r in each),
                   "verified_on_hardware": all(r["device"].get("verified_on_hardware") for r in each)},
        "mode": "measured" if "measured" in modes else "emulated" if "emulated" in modes else "estimated",
        "device_host": None, "rows": rows, "skipped": skipped, "warnings": warnings, "fleet": fleet,
    }
