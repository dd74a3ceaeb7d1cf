"""Credit amounts and the account rows the store keeps: integers in micro-credits (1 credit
= 1_000_000), times in unix milliseconds. The rules that use them are
daemon/account/credit_rules.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

MICRO = 1_000_000


HOUR_MS = 3_600_000


def to_micro(credits: Decimal | str | int | float) -> int:
    """Credits (as written in config or on the command line) -> micro-credits."""
    value = Decimal(str(credits)) * MICRO
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def format_credits(micro: int, places: int = 6) -> str:
    """Micro-credits -> "12.345678" (exact; no float on the way)."""
    return f"{Decimal(micro) / MICRO:.{places}f}"


@dataclass(frozen=True)
class Account:
    allocation: int  # micro-credits granted by `scriptctl account set --allocation`
    balance: int  # micro-credits remaining; may dip a tick's worth below zero


@dataclass(frozen=True)
class LedgerEntry:
    """Usage of one replica within one wall-clock hour; the store adds it to that row."""

    replica_id: str
    script: str
    version: int
    profile: str
    hour_start_ms: int
    period_start_ms: int  # must equal the replica's high-water mark (or its start)
    period_end_ms: int  # the new high-water mark
    replica_ms: int
    amount: int  # micro-credits


@dataclass(frozen=True)
class Charge:
    before: Account
    after: Account


def low_threshold(allocation: int, setting: str) -> int:
    """The low-balance threshold in micro-credits: "10%" of the allocation, or "2.5" credits."""
    text = setting.strip()
    try:
        if text.endswith("%"):
            return int(Decimal(allocation) * Decimal(text[:-1]) / 100)
        return to_micro(text)
    except ArithmeticError as e:
        raise ValueError(f"low_balance is like '10%' or '2.5' (credits), not {setting!r}") from e
