"""Build hook (hatchling): compiles snapping's ranking kernel, service/domain/_ranking.c.

It runs for every wheel hatchling builds, editable ones too, so `pip install .` and
`pip install -e .` both leave ``service/domain/_ranking.so`` (service/domain/ranking.py loads it
with ctypes) next to its source. It needs a C compiler (``$CC``, else Python's own, else ``cc``)
and libc's headers; no Python headers. The wheel is then tagged for this platform.

The flags keep the kernel's arithmetic bit for bit numpy's: -ffp-contract=off forbids fused
multiply-adds, and nothing like -ffast-math or -march=native is added.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("service", "domain", "_ranking.c")
FLAGS = ["-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-std=c99"]


class RankingKernelHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        source = Path(self.root, SOURCE)
        suffix = sysconfig.get_config_var("SHLIB_SUFFIX") or ".so"
        library = source.with_name("_ranking" + suffix)
        compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        command = [*compiler, *FLAGS, "-o", str(library), str(source), "-lm"]
        self.app.display_info(f"building the ranking kernel: {shlex.join(command)}")
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            raise RuntimeError(
                f"could not compile {SOURCE} ({error}); crossings needs a C compiler and libc's "
                "headers to install (Debian: apt-get install gcc libc6-dev)"
            ) from error
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].append(str(library.relative_to(self.root)))
