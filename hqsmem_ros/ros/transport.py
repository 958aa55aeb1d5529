"""The package's Fast DDS profile (config/fastdds.xml): where it is, and applying it to a process.

Fast DDS reads ``FASTDDS_DEFAULT_PROFILES_FILE`` when the first participant is created, so ``apply``
must run before ``rclpy.init``. A profile the user set already wins; other RMWs ignore the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def profile_path() -> Path:
    """The installed config/fastdds.xml, else the source tree's (the pip route sets no AMENT_PREFIX_PATH)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory("hqsmem_ros")) / "config" / "fastdds.xml"
        if installed.is_file():
            return installed
    except (ImportError, LookupError, OSError):  # no ament index, or the package is not in it
        pass
    return Path(__file__).resolve().parents[2] / "config" / "fastdds.xml"


def apply(env: dict | os._Environ = os.environ) -> str:
    """Point ``env`` at the package's profile unless it names one already; returns the profile in effect."""
    return env.setdefault(ENV, str(profile_path()))
