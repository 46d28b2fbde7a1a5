"""A C2SP tlog-witness anyone can run: `broker witness init` and `broker witness serve`.

It needs no broker database: its key and its SQLite state live in one folder of its own.
"""

from broker.witness.app import create_app
from broker.witness.state import Cosigned, RefusalRecord, WitnessState
from broker.witness.witness import Witness, follow, parse_log

__all__ = ["Cosigned", "RefusalRecord", "Witness", "WitnessState", "create_app", "follow",
           "parse_log"]
