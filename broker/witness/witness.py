"""A witness: the logs it follows, its key and its state; checks a submission and cosigns it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.core.checkpoint import CheckpointInvalid, Verifier, parse_verifier_key, public_key_bytes
from broker.core.cosignature import Cosigner, cosign
from broker.core.witness import Refusal, open_submission, parse_submission, trusted_note
from broker.witness.state import Cosigned, WitnessState

log = logging.getLogger("broker.witness")


def parse_log(text: str) -> tuple[str, Verifier]:
    """A followed log from ``VKEY`` (its origin is the key's name) or ``VKEY ORIGIN``.

    A vkey holds no space, so everything after the first space is the origin.
    """
    vkey, _, origin = text.strip().partition(" ")
    verifier = parse_verifier_key(vkey)
    origin = origin.strip() or verifier.name
    if "\n" in origin:
        raise CheckpointInvalid("an origin is one line")
    return origin, verifier


def follow(logs: Sequence[str]) -> dict[str, list[Verifier]]:
    """The trusted keys per origin, from `--log` values; a log may have several keys."""
    trusted: dict[str, list[Verifier]] = {}
    for text in logs:
        origin, verifier = parse_log(text)
        trusted.setdefault(origin, []).append(verifier)
    return trusted


@dataclass
class Witness:
    """Cosigns the checkpoints of `logs` that consistently extend what it cosigned before."""

    name: str
    private_key: Ed25519PrivateKey
    logs: Mapping[str, list[Verifier]]
    state: WitnessState
    clock: Callable[[], float] = field(default=time.time)

    @property
    def cosigner(self) -> Cosigner:
        return Cosigner.from_public_key(self.name, public_key_bytes(self.private_key))

    def _cosign(self, body: str) -> str:
        return cosign(body, self.name, self.private_key, int(self.clock())).line()

    def add_checkpoint(self, request: bytes) -> str:
        """Answer one add-checkpoint body with its cosignature line, or raise a `Refusal`."""
        try:
            submission = parse_submission(request)
            checkpoint = open_submission(submission, self.logs)
            kept = trusted_note(submission, self.logs[checkpoint.origin])
            lines = self.state.add(replace(submission, note=kept), checkpoint, self._cosign)
        except Refusal as refusal:
            log.info("refused a checkpoint: %s %s (%s)", refusal.status, refusal.reason,
                     refusal.detail)
            raise
        log.info("cosigned %s at size %d", checkpoint.origin, checkpoint.size)
        return lines

    def latest(self, origin: str) -> Cosigned | None:
        """The latest checkpoint cosigned for `origin`, for monitors."""
        return self.state.latest(origin)
