"""The send-wait-resend skeleton the -O probes share.

A stack probe sends a round of crafted packets, waits for late answers (8 round trips of the
slowest answer so far, `engine.link.answers_settle`), and sends once more what got no answer, at
half the wait: one lost packet must not read as "this stack does not answer that".
"""

from __future__ import annotations

from hostprint.engine.link import Link, Links, answers_settle


class TwoRounds:
    """Subclasses set `addr`, `links`, `wait` and provide `_on_frame`, `_rtts`, `_send_round`."""

    addr: str
    links: Links
    wait: float

    def _on_frame(self, ts: int, fr: memoryview) -> None:
        raise NotImplementedError

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
        link.subscribe(self._on_frame)
        try:
            for attempt in range(2):
                await self._send_round(link, mac, attempt)
                # without a known RTT (-Pn) a fixed second per round made -O 3x slower on a LAN
                await answers_settle(link, self.wait if attempt == 0 else self.wait / 2, self._rtts)
                if self._complete():
                    break
        finally:
            link.unsubscribe(self._on_frame)
        return True


