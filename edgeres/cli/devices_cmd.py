from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DevicesDirOpt = Annotated[Optional[Path], typer.Option(
    "--devices-dir", envvar="EDGERES_DEVICES",
    help="Directory of your own <name>.yaml device profiles; they add to and override the built-in ones.")]


def devices(
    devices_dir: DevicesDirOpt = None,
    setup: Annotated[Optional[str], typer.Option(
        "--setup", metavar="DEVICE", help="Prepare DEVICE's emulation here (the arm64 root of qemu-user for "
        "aarch64 boards; downloads Debian packages and aarch64 wheels), then exit.")] = None,
) -> None:
    """List the device profiles and whether each is usable here now (runtime, NPU/EP, CUDA, ssh host,
    emulation)."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.table import Table

    from edgeres import devices as dev
    from edgeres.console import out

    if setup is not None:
        from edgeres import emulation

        profile = dev.emulated(dev.get(setup, devices_dir))
        root = emulation.setup()
        out.print(f"arm64 root ready: {root.path} ({root.info['bytes'] / 1e6:.0f} MB, Python {root.info['python']}, "
                  f"built in {root.info['seconds']:g} s); runtimes: {', '.join(root.runtimes.values()) or 'none'}")
        out.print(f"measure emulated: edgeres bench --device {profile.name} --emulate")
        return
    profiles = dev.load_all(devices_dir)
    builtin = dev.builtin_dir()
    with ThreadPoolExecutor(max_workers=8) as pool:  # ssh reachability checks wait on the network
        checks = dict(zip(profiles, pool.map(dev.usable, profiles.values())))
    table = Table("name", "description", "arch", "connection", "runtimes", "run on its hardware", "usable here", "why")
    for name, profile in profiles.items():
        runtimes = []
        for runtime in profile.runtimes.names():
            settings = getattr(profile.runtimes, runtime)
            detail = (getattr(settings, "provider", None) or getattr(settings, "delegate", None)
                      or getattr(settings, "device", None) or ("XNNPACK" if runtime == "tflite" else ""))
            runtimes.append(f"{runtime} ({detail})")
        ok, reason = checks[name]
        if profile.emulation is not None:
            reason += f"; --emulate: {dev.usable(dev.emulated(profile))[1]}"
        label = name if profile.path.parent == builtin else f"{name} [dim](user)[/]"
        verified = "yes" if profile.verified_on_hardware else "[yellow]not yet[/]"
        table.add_row(label, profile.description, profile.arch, profile.describe_connection(), "\n".join(runtimes),
                      verified, "[green]yes[/]" if ok else "[red]no[/]", reason)
    out.print(table)
    if any(not p.verified_on_hardware for p in profiles.values()):
        out.print("run on its hardware: [yellow]not yet[/] = the profile has never been run on the real device: its "
                  "settings and estimate figures are unchecked there (verified_on_hardware in the profile)")
