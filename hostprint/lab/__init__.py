"""The test and demo lab: hosts as network namespaces on a bridge, each with its own kernel stack
settings, real Debian daemons, an nft firewall, and injectable loss and delay.

Everything the scanner is tested against lives here, so tests exercise real kernels and real
servers instead of mocks (brief rule 2).
"""

from hostprint.lab.lab import DaemonUnavailable, HostHandle, Lab, lab_status
from hostprint.lab.netns import LabError
from hostprint.lab.spec import HostSpec, LabSpec, demo_spec

__all__ = ["DaemonUnavailable", "Lab", "LabSpec", "HostSpec", "HostHandle", "LabError", "demo_spec", "lab_status"]
