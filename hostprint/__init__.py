"""hostprint: who is on the other end of this address.

Discovery, port scanning, OS fingerprinting (stack probes, retransmission timing, passive) and
application fingerprinting, with reports that nmap tooling can read.
"""

__version__ = "0.1.0"
