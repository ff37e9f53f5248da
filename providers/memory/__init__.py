"""The simulated PBX: the embedded default backend."""

from providers.memory.pbx import MemoryPBX, Script, SimCall, SimText

__all__ = ["MemoryPBX", "Script", "SimCall", "SimText"]
