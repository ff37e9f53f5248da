"""The simulated PBX: the embedded default backend."""

from providers.memory.pbx import MemoryPBX, Script, SimCall

__all__ = ["MemoryPBX", "Script", "SimCall"]
