"""The send-wait-resend skeleton the -O probes share.

A stack probe sends a round of crafted packets, waits for late answers (8 round trips of the
slowest answer so far, `engine.link.answers_settle`), and sends once more what got no answer, at
half the wait: one lost packet must not read as "this stack does not answer that".
"""

from __future__ import annotations

from hostprint.engine import replies
from hostprint.engine.link import Link, Links, answers_settle


class TwoRounds:
    """Subclasses set `addr`, `links`, `wait` and provide `_want` (the replies they take, cookie
    checks included: engine/replies.py), `_on_reply`, `_rtts`, `_send_round`."""

    addr: str
    links: Links
    wait: float

    def _want(self) -> replies.Want:
        raise NotImplementedError

    def _on_reply(self, r: replies.Reply) -> None:
        raise NotImplementedError

    def feed(self, ts_ns: int, frame: bytes | memoryview) -> None:
        """One frame as the link would hand it over (tests on captured bytes use this)."""
        r = replies.decode_reply(ts_ns, frame)
        if r is not None and self._want().accepts(r):
            self._on_reply(r)

    def _rtts(self) -> list[float]:
        raise NotImplementedError

    async def _send_round(self, link: Link, mac: bytes, attempt: int) -> None:
        raise NotImplementedError

    def _complete(self) -> bool:
        """Everything answered: no second round needed."""
        return False

    async def _rounds(self, conditions: list[str]) -> bool:
        """Both rounds; False (with the reason in `conditions`) when the next hop is unreachable."""
        link, mac = await self.links.toward(self.addr)
        if mac is None:
            conditions.append("target did not answer ARP")
            return False
        token = link.listen(self._want(), self._on_reply)
        try:
            for attempt in range(2):
                await self._send_round(link, mac, attempt)
                # without a known RTT (-Pn) a fixed second per round made -O 3x slower on a LAN
                await answers_settle(link, self.wait if attempt == 0 else self.wait / 2, self._rtts)
                if self._complete():
                    break
        finally:
            link.unlisten(token)
        return True


