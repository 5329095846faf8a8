from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeres.cli.common import JsonOpt

DevicesDirOpt = Annotated[Optional[Path], typer.Option(
    "--devices-dir", envvar="EDGERES_DEVICES",
    help="Directory of your own <name>.yaml device profiles; they add to and override the built-in ones.")]
TrustNewHostOpt = Annotated[bool, typer.Option(
    "--trust-new-host", help="Trust an ssh device whose host key is not in known_hosts yet, and record it (a "
    "changed key is always refused).")]


def devices(
    devices_dir: DevicesDirOpt = None,
    setup: Annotated[Optional[str], typer.Option(
        "--setup", metavar="DEVICE", help="Prepare DEVICE's emulation here (the arm64 root of qemu-user for "
        "aarch64 boards; downloads Debian packages and aarch64 wheels), then exit.")] = None,
    json_: JsonOpt = False,
) -> None:
    """List the device profiles and whether each is usable here now (runtime, NPU/EP, CUDA, ssh host,
    emulation).

    --json: {"devices": [{"name", "description", "arch", "connection", "runtimes": [{"runtime", "detail"}],
    "verified_on_hardware", "usable", "why", "emulation": null or {"usable", "why"}, "profile", "user"}]};
    with --setup: {"setup": {"device", "root", "bytes", "python", "seconds", "runtimes"}}."""
    from edgeres.console import emit_json, show, stdout_to_stderr

    if setup is not None:
        _setup(setup, devices_dir, json_)
        return
    with stdout_to_stderr(json_):
        rows = _rows(devices_dir)
    if json_:
        emit_json({"devices": rows})
        return
    show(_table(rows))


def _rows(devices_dir: Path | None) -> list[dict]:
    """What ``devices`` shows, one dict per profile (the --json keys)."""
    from concurrent.futures import ThreadPoolExecutor

    from edgeres import devices as dev
    from edgeres.runtimes import registry

    profiles = dev.load_all(devices_dir)
    builtin = dev.builtin_dir()
    with ThreadPoolExecutor(max_workers=8) as pool:  # ssh reachability checks wait on the network
        checks = dict(zip(profiles, pool.map(dev.usable, profiles.values())))
    rows = []
    for name, profile in profiles.items():
        runtimes = [{"runtime": runtime,
                     "detail": registry.device_label(runtime, getattr(profile.runtimes, runtime).model_dump())}
                    for runtime in profile.runtimes.names()]
        ok, reason = checks[name]
        emulation = None
        if profile.emulation is not None:
            emulation = dict(zip(("usable", "why"), dev.usable(dev.emulated(profile))))
        rows.append({"name": name, "description": profile.description, "arch": profile.arch,
                     "connection": profile.describe_connection(), "runtimes": runtimes,
                     "verified_on_hardware": profile.verified_on_hardware, "usable": ok, "why": reason,
                     "emulation": emulation, "profile": str(profile.path), "user": profile.path.parent != builtin})
    return rows


def _table(rows: list[dict]):
    from rich.text import Text

    from edgeres.console import table

    caption = None
    if any(not row["verified_on_hardware"] for row in rows):
        caption = Text.assemble("run on its hardware: ", ("not yet", "yellow"), " = the profile has never been run "
                                "on the real device: its settings and estimate figures are unchecked there "
                                "(verified_on_hardware in the profile)")
    shown = table("name", "description", "arch", "connection", "runtimes", "run on its hardware", "usable here",
                  "why", caption=caption)
    for row in rows:
        why = row["why"] + (f"; --emulate: {row['emulation']['why']}" if row["emulation"] else "")
        shown.add_row(Text.assemble(row["name"], (" (user)", "dim") if row["user"] else ""),
                      Text(row["description"]), Text(row["arch"]), Text(row["connection"]),
                      Text("\n".join(f"{r['runtime']} ({r['detail']})" for r in row["runtimes"])),
                      Text("yes") if row["verified_on_hardware"] else Text("not yet", "yellow"),
                      Text("yes", "green") if row["usable"] else Text("no", "red"), Text(why))
    return shown


def _setup(device: str, devices_dir: Path | None, json_: bool) -> None:
    from edgeres import devices as dev
    from edgeres import emulation
    from edgeres.console import emit_json, out, stdout_to_stderr

    with stdout_to_stderr(json_):
        profile = dev.emulated(dev.get(device, devices_dir))
        root = emulation.setup()
    if json_:
        emit_json({"setup": {"device": profile.name, "root": str(root.path), "bytes": root.info["bytes"],
                             "python": root.info["python"], "seconds": root.info["seconds"],
                             "runtimes": root.runtimes}})
        return
    out.print(f"arm64 root ready: {root.path} ({root.info['bytes'] / 1e6:.0f} MB, Python {root.info['python']}, "
              f"built in {root.info['seconds']:g} s); runtimes: {', '.join(root.runtimes.values()) or 'none'}",
              markup=False)
    out.print(f"measure emulated: edgeres bench --device {profile.name} --emulate", markup=False)
