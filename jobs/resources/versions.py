"""The package versions that change a job's results, recorded at submit and checked by the worker.

A sweep compares runs; a run trained or decoded under another torch/transformers/peft/bitsandbytes
minor release may differ for that reason alone (kernels, generation defaults, adapter formats).
`orchestrator submit` records this machine's versions in each job's spec (`versions`, outside
its content hash); a worker whose versions differ refuses the job with the reason. Releases are
compared by major.minor: patch releases fix bugs and are let through, and a local build tag
(`+cu128`, `+cpu`) names a build, not a release.
"""

from __future__ import annotations

import re
from importlib import metadata

RESULT_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes")
NOT_INSTALLED = "not installed"


def installed_versions(packages: tuple[str, ...] = RESULT_PACKAGES) -> dict[str, str]:
    """Package -> installed version (as pip reports it), for each package in `packages`."""
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = NOT_INSTALLED
    return found


def release(version: str) -> str:
    """The part compared: `2.11.0+cu128` -> `2.11`."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return f"{match.group(1)}.{match.group(2)}" if match else version


def mismatches(recorded: dict[str, str], installed: dict[str, str] | None = None) -> list[str]:
    """`package: recorded X, this worker Y` for each recorded package whose release differs here."""
    here = installed if installed is not None else installed_versions(tuple(recorded))
    return [
        f"{package}: submitted with {wanted}, this worker has {here.get(package, NOT_INSTALLED)}"
        for package, wanted in sorted(recorded.items())
        if release(wanted) != release(here.get(package, NOT_INSTALLED))
    ]
