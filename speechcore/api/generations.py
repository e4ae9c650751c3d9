"""GenerationsInFlight: the generations an API process is running, per client, and whether it is
stopping. The access middleware counts them (a client's share) and refuses new ones while the
server stops; whoever stops the server waits until none is left."""

from __future__ import annotations

from collections import Counter


class GenerationsInFlight:
    def __init__(self) -> None:
        self.per_client: Counter[str] = Counter()
        self.stopping = False
        """Set once, when the server starts to stop: new generations are refused (503), the ones
        in flight run to their end."""

    @property
    def total(self) -> int:
        return sum(self.per_client.values())

    def start(self, client: str) -> None:
        self.per_client[client] += 1

    def end(self, client: str) -> None:
        self.per_client[client] -= 1
        if not self.per_client[client]:
            del self.per_client[client]
