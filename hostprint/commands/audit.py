"""`hostprint audit` (placeholder while the scrubber is built)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("audit", help="what an attacker learns about hosts you own")
    p.set_defaults(func=lambda a: 0)
