"""Hand-built runs for the report and diff tests: two scans of the same three addresses a day apart.

What changes from A to B (the diff tests assert exactly this list):
  198.18.0.10  80/tcp open -> filtered (closed), 443/tcp closed -> open (opened),
               22/tcp OpenSSH 2+deb12u3 -> 2+deb12u4 (service), OS Linux 3.1+ -> Linux 4.8+ (OS)
  198.18.0.11  up -> down (went away)
  198.18.0.12  down -> up (appeared)
Run B also carries hostile strings (markup and an http:// image in a banner and a hostname) that
the HTML report must show as text and never turn into elements or requests.
The timing and sequence numbers are shaped like a Linux 6.x measurement in the lab (gaps 1.02,
2.02, 4.22, 8.19, 16.13 s; 1 kHz timestamp clock) so the signature overlay has something real to
line up with.
"""

from __future__ import annotations

from hostprint.model import ExtraPorts, HostResult, OsEvidence, PortResult, ScanRun, Service

HOSTILE_PRODUCT = 'nginx"><img src="http://198.18.255.253/banner.png">'
HOSTILE_HOSTNAME = "<script>document.title='pwned'</script>h.example"

SYN_ARRIVALS = [0.0003, 1.0193, 3.0351, 7.2593, 15.4512, 31.579]
LASTACK_ARRIVALS = [0.0004, 0.2084, 0.6164, 1.4484, 3.0804, 6.4004, 13.0404, 26.3204, 52.8804]
ISN_VALUES = [3120958201, 1280391122, 3900011234, 220193847, 2871623490, 999112233]
IPID_VALUES = [4411, 4412, 4413, 4414, 4415, 4416]
TS_VALUES = [312456001, 312456101, 312456202, 312456302, 312456403, 312456503]


def _svc(name: str, product: str | None = None, version: str | None = None, method: str = "banner",
         confidence: float = 0.9) -> Service:
    return Service(name=name, product=product, version=version, method=method, confidence=confidence)


def _t1_os(best: str) -> dict:
    return {
        "matches": [
            {"name": best, "family": "Linux", "vendor": "Linux", "generation": "3.X-6.X",
             "device_type": "general purpose", "confidence": 0.93,
             "evidence": [{"method": "timing", "detail": "SYN-ACK retransmissions 1, 2, 4, 8, 16 s apart"},
                          {"method": "stack", "detail": "TTL 64, DF, options MSTNW"},
                          {"method": "banner", "detail": "OpenSSH 9.2p1 Debian"}]},
            {"name": "Linux 2.6.32 - 3.0", "family": "Linux", "vendor": "Linux", "generation": "2.6.X",
             "device_type": "general purpose", "confidence": 0.05,
             "evidence": [{"method": "timing", "detail": "3 s initial RTO does not fit"}]},
        ],
        "architecture": [
            {"kind": "load-balancer", "detail": "two TCP timestamp clocks behind one address (ports 80, 443)"},
            {"kind": "nat", "detail": "IP ID sequences of ports 22 and 80 are independent"},
        ],
        # the shape hostprint/probes/timing.py writes (matches carry name/id, not instants)
        "timing": {
            "db": "hostprint",
            "outcome": "match",
            "tests": [
                {"test": "syn", "port": 80, "rtt_us": 310, "arrivals": SYN_ARRIVALS, "rst": None, "status": "ok",
                 "signature": "CronOS_Syn(nbPkt=5%Time=63%p=1019000%p=2016000%p=4224000%p=8192000%p=16128000)"},
                {"test": "lastack", "port": 80, "rtt_us": 310, "arrivals": LASTACK_ARRIVALS, "rst": None,
                 "status": "ok"},
            ],
            "matches": [
                {"name": "Linux 3.1 and later", "id": "linux-3.1+", "family": "Linux", "confidence": 0.93},
                {"name": "Linux 3.1 and later, 4 SYN-ACK retransmissions (tuned)", "id": "linux-3.1+-synack4",
                 "family": "Linux", "confidence": 0.05},
            ],
        },
    }


def run_a() -> ScanRun:
    r = ScanRun(args=["hostprint", "198.18.0.10-12", "-p", "22,80,443,6379,8080"], id="a0a0a0a0a0a0",
                started=1763870000.0, scan_types=["syn"], ports_scanned={"tcp": [22, 80, 443, 6379, 8080]})
    r.finished = r.started + 64.2
    t1 = HostResult("198.18.0.10", "up", ["arp-response"], mac="02:00:c6:12:00:0a", distance=0, rtt_us=310.0)
    t1.set_ports([
        PortResult(22, "tcp", "open", "syn-ack", 64, _svc("ssh", "OpenSSH", "9.2p1 Debian 2+deb12u3")),
        PortResult(80, "tcp", "open", "syn-ack", 64, _svc("http", "nginx", "1.22.1")),
        PortResult(443, "tcp", "closed", "reset", 64),
        PortResult(6379, "tcp", "open", "syn-ack", 64, _svc("redis", "Redis key-value store", "7.0.15")),
    ])
    t1.extraports = [ExtraPorts("closed", 1, {"reset": 1})]  # 8080
    t1.os = OsEvidence.from_dict(_t1_os("Linux 3.1 and later"))
    t1.sequence = {
        "responses": 6,
        "isn": {"gcd": 1, "isr": 262, "sp": 255, "rate_per_s": 6.9e9, "values": ISN_VALUES},
        "ip_id": {"class": "I", "values": IPID_VALUES},
        "tcp_ts": {"hz": 1000.0, "clock": "shared", "uptime_s": 312456, "nominal_hz": 1000, "values": TS_VALUES},
    }
    t2 = HostResult("198.18.0.11", "up", ["reset"], rtt_us=420.0, distance=1)
    t2.set_ports([PortResult(8080, "tcp", "open", "syn-ack", 63, _svc("http-proxy", method="port-table",
                                                                    confidence=0.3)),
                  PortResult(22, "tcp", "filtered", "no-response")])
    t2.extraports = [ExtraPorts("closed", 3, {"reset": 3})]
    t3 = HostResult("198.18.0.12", "down", ["no-response"])
    r.hosts = [t1, t2, t3]
    return r


def run_b() -> ScanRun:
    r = run_a()
    r.id = "b0b0b0b0b0b0"
    r.started += 86400
    r.finished = r.started + 70.0
    t1, t2, _ = r.hosts
    t1.hostname = HOSTILE_HOSTNAME
    t1.ports[0].service.version = "9.2p1 Debian 2+deb12u4"  # type: ignore[union-attr]
    t1.ports[1].state, t1.ports[1].reason = "filtered", "no-response"
    t1.ports[2].state, t1.ports[2].reason = "open", "syn-ack"
    t1.ports[2].service = _svc("https", HOSTILE_PRODUCT, "1.22.1")
    t1.os = OsEvidence.from_dict(_t1_os("Linux 4.8 and later"))
    t2.status, t2.reasons = "down", ["no-response"]
    t3 = HostResult("198.18.0.12", "up", ["echo-reply"])
    t3.set_ports([PortResult(22, "tcp", "open", "syn-ack", 64, _svc("ssh", "Dropbear sshd", "2022.83"))])
    t3.extraports = [ExtraPorts("closed", 4, {"reset": 4})]
    t3.os = OsEvidence.from_dict({"matches": [{"name": "Embedded Linux (busybox)", "confidence": 0.7}]})
    r.hosts[2] = t3
    return r
