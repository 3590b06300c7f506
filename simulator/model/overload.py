"""Whether the modelled service kept up, and the size checks that keep the model bounded.

An overloaded configuration is the model's most important answer, so it must come quickly and
say so plainly: the peak demand against the servers' capacity, and how far behind the servers
fell. A FIFO server's backlog is one number (the time it will be free); the model keeps that,
not the waiting orders (see ``sim``), so an overload costs no more time or memory than a run
that keeps up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: the most memory the model's state may take (servers, stock groups and their report lines)
MAX_STATE_BYTES = 1 << 30
#: bytes per stock group: four int64 arrays, their temporaries and a line in the report
_GROUP_BYTES = 4 * 8 + 3 * 8 + 100


def state_bytes(products: int, shards: int, servers: int, hot_row: bool, limit: int) -> int:
    """Memory the model's state needs: per server its last departures (the last ``limit``
    with an admission limit), per stock group (product × shard) its stock bookkeeping."""
    bases = products * shards if hot_row else shards
    queues = bases * servers
    return queues * 8 * (1 + limit) + bases * 8 + products * shards * _GROUP_BYTES


def check_state_size(products: int, shards: int, servers: int, hot_row: bool, limit: int) -> None:
    """ValueError, saying how big it would be, when the state would not fit the budget."""
    need = state_bytes(products, shards, servers, hot_row, limit)
    if need > MAX_STATE_BYTES:
        per = f", queue limit {limit:,} per server" if limit else ""
        raise ValueError(
            f"{shards:,} shard(s) × {servers:,} server(s) × {products:,} product(s){per} would "
            f"need {need / 1e9:,.1f} GB of model state (at most {MAX_STATE_BYTES / 1e9:.1f} GB); "
            "use fewer shards, servers or a smaller queue limit"
        )


@dataclass(frozen=True, slots=True)
class Overload:
    """How the servers coped: demand against capacity and the backlog they built.

    ``demand_per_s``: requests (retries included) in the busiest second of the sale.
    ``capacity_per_s``: what all servers finish per second at the mean service time.
    ``backlog_max_s``: the longest an arrival would have queued (the busiest server's
    backlog at its worst). ``busy_after_end_s``: how long the servers kept working after the
    last request arrived. ``decided_early``: requests whose stock was decided while still
    queued, because the backlog was too long to keep (see ``sim``). ``overloaded``: the
    backlog outgrew the client's timeout, so waiting buyers gave up.
    """

    demand_per_s: float
    capacity_per_s: float
    backlog_max_s: float
    busy_after_end_s: float
    decided_early: int
    timeout_s: float

    @property
    def overloaded(self) -> bool:
        """Whether queueing alone made buyers time out."""
        return self.backlog_max_s > self.timeout_s

    def message(self) -> str:
        """One line for the terminal: empty when the servers kept up."""
        if not self.overloaded:
            return ""
        text = (
            f"overloaded: demand {self.demand_per_s:,.0f}/s vs capacity "
            f"{self.capacity_per_s:,.0f}/s; queues reached {self.backlog_max_s:,.1f} s "
            f"(timeout {self.timeout_s:g} s), servers busy {self.busy_after_end_s:,.1f} s "
            "after the last arrival"
        )
        if self.decided_early:
            text += (
                f"; {self.decided_early:,} queued requests had their stock decided early "
                "(exact per shard with one server; sold-out answers' 'false' flag approximate)"
            )
        return text

    def describe(self) -> dict[str, Any]:
        """A JSON-ready dict for the report."""
        return {
            "overloaded": self.overloaded,
            "demand_per_s": round(self.demand_per_s, 1),
            "capacity_per_s": round(self.capacity_per_s, 1),
            "backlog_max_s": round(self.backlog_max_s, 4),
            "busy_after_end_s": round(self.busy_after_end_s, 4),
            "decided_early": self.decided_early,
            "message": self.message(),
        }
