"""The fingerprint scrubber (issue 19): a router (or one host) that makes the stacks behind it
answer alike, after Smart, Malan and Jahanian, "Defeating TCP/IP Stack Fingerprinting" (USENIX
Security 2000), pf's `scrub` and Handley, Paxson and Kreibich's traffic normaliser.

- rules.py: the configuration, the nftables ruleset (what the kernel rewrites itself: TTL, DF, TOS
  and ECN, IP ID, MSS, TCP options removed from SYNs, odd flag combinations and TCP outside a
  tracked handshake dropped, ICMP queries dropped, ICMP errors rate-limited, SYNPROXY) and the one
  iptables rule per direction that queues the packets nft cannot rewrite (NFQUEUE: the kernel here
  has no nft `queue` expression, only the xt target), all named after the owner's PID and start
  time so a crash leaves nothing another run cannot find and remove.
- normalise.py: the user-space rewrites, pure functions on IPv4 packets (one TCP option layout,
  handshake windows, RST bodies, ICMP quotes cut to the IP header + 8 bytes, ECN/reserved flags).
- nfqueue.py: ctypes on Debian's libnetfilter_queue1 (the binding choice is explained there).
- run.py: up (install, serve the queue, remove on every exit path), down, status, dry-run.
"""
