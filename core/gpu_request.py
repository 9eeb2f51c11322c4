"""What ``--gpu`` asks for, read without TensorFlow (so options can check it cheaply).

RELION's GUI writes GPU ids as "0", "0,1" (threads of one rank) or "0:1"
(one group per MPI rank), and users paste the same text into gmmrefine's
``gpu`` parameter. One run computes on one device, so every id after the
first is reported and left unused; gmmrefine.device applies the choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError

CPU_WORD = "cpu"
_IDS = re.compile(r"^\s*\d+(\s*[,:]\s*\d+)*\s*$")


@dataclass(frozen=True)
class GpuRequest:
    """ids: the GPU ids asked for, in order (TensorFlow's numbering, which follows
    CUDA_VISIBLE_DEVICES); None: the first GPU TensorFlow sees, else the CPU;
    (): the CPU only."""

    ids: tuple[int, ...] | None

    @property
    def cpu_only(self) -> bool:
        return self.ids == ()

    @property
    def automatic(self) -> bool:
        return self.ids is None


def parse_gpu(text: str | None) -> GpuRequest:
    """Read a ``--gpu`` value: None (auto), "cpu", or ids as RELION writes them.

    Raises
    ------
    InputError
        One line naming ``--gpu`` and what was expected.
    """
    if text is None:
        return GpuRequest(None)
    word = str(text).strip()
    if word.lower() == CPU_WORD:
        return GpuRequest(())
    if not _IDS.match(word):
        raise InputError(f"--gpu {text!r}: expected GPU ids as RELION writes them (0, 0,1 or "
                         f"0:1), {CPU_WORD}, or auto")
    return GpuRequest(tuple(int(part) for part in re.split(r"[,:]", word)))
