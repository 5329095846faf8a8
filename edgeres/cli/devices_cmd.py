from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DevicesDirOpt = Annotated[Optional[Path], typer.Option(
    "--devices-dir", envvar="EDGERES_DEVICES",
    help="Directory of your own <name>.yaml device profiles; they add to and override the built-in ones.")]


def devices(devices_dir: DevicesDirOpt = None) -> None:
    """List the device profiles and whether each is usable here now (runtime, NPU/EP, CUDA, ssh host)."""
    from concurrent.futures import ThreadPoolExecutor

    from rich.table import Table

    from edgeres import devices as dev
    from edgeres.console import out

    profiles = dev.load_all(devices_dir)
    builtin = dev.builtin_dir()
    with ThreadPoolExecutor(max_workers=8) as pool:  # ssh reachability checks wait on the network
        checks = dict(zip(profiles, pool.map(dev.usable, profiles.values())))
    table = Table("name", "description", "arch", "connection", "runtimes", "usable here", "why")
    for name, profile in profiles.items():
        runtimes = []
        for runtime in profile.runtimes.names():
            settings = getattr(profile.runtimes, runtime)
            detail = (getattr(settings, "provider", None) or getattr(settings, "delegate", None)
                      or getattr(settings, "device", None) or ("XNNPACK" if runtime == "tflite" else ""))
            runtimes.append(f"{runtime} ({detail})")
        ok, reason = checks[name]
        label = name if profile.path.parent == builtin else f"{name} [dim](user)[/]"
        table.add_row(label, profile.description, profile.arch, profile.describe_connection(), "\n".join(runtimes),
                      "[green]yes[/]" if ok else "[red]no[/]", reason)
    out.print(table)
