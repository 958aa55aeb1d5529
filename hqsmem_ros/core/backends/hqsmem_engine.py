"""DeAOT's engine with keyed long-term memory, so that SmartMemory decides what DeAOT remembers.

``AOTEngine.update_long_term_memory`` is the single point where a frame enters long-term memory, and stock
it prepends every memory frame forever. ``KeyedMemoryEngine`` overrides it to only keep the frame as the
*candidate*; ``store(key)`` turns the candidate into an entry, ``drop(key)`` removes one, and the engine's
``long_term_memories`` is re-assembled as the concatenation of its entries (long-term attention is
order-free over tokens). So memory holds the pinned reference frames + at most K frames for any video length.

Imports deaotpy at the top: the backend imports this module only when it builds an engine, so that the
configuration (and ``backend: cpu``) needs no deaotpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from aot.networks.engines.deaot_engine import DeAOTEngine
from aot.utils.image import one_hot_mask


@dataclass
class MemoryEntry:
    layers: list[list]  # per LSTT layer: [K, V, None, ID_V], as the engine attends to them
    raw_id: list  # per layer: the ID branch before fusion with the label (None at layer 0)
    label: torch.Tensor  # (1, 1, h, w) uint8 accepted label map at the engine's input size

    def nbytes(self) -> int:
        tensors = [t for layer in self.layers for t in layer] + self.raw_id + [self.label]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class KeyedMemoryEngine(DeAOTEngine):
    """A DeAOT engine whose long-term memory is the concatenation of keyed entries."""

    def __init__(self, model: torch.nn.Module):
        # gap 0: every accepted frame is offered to the hook below; the backend decides what is kept.
        super().__init__(model, gpu_id=0, long_term_mem_gap=0)
        self.eval()
        self.entries: dict[int, MemoryEntry] = {}
        self.slots: dict[int, int] = {}  # identity slot (1..max_obj_num) -> object id
        self.candidate: list[list] | None = None  # the current frame's memory, not yet an entry
        self.raw_id: list | None = None
        self.label: torch.Tensor | None = None

    def update_long_term_memory(self, new_long_term_memories):
        self.candidate = [list(layer) for layer in new_long_term_memories]

    def update_short_term_memory(self, curr_mask, curr_id_emb=None, skip_long_term_update=False):
        self.raw_id = [layer[3] for layer in self.curr_lstt_output[1]]  # before the base fuses it in place
        self.label = curr_mask
        super().update_short_term_memory(curr_mask, curr_id_emb, skip_long_term_update)

    def add_reference_frame(self, img=None, mask=None, frame_step=-1, obj_nums=None, img_embs=None):
        super().add_reference_frame(img, mask, frame_step, obj_nums, img_embs)
        self.raw_id = [layer[3] for layer in self.curr_lstt_output[1]]
        self.label = mask
        self.candidate = [list(layer) for layer in self.curr_lstt_output[2]]
        self.assemble()  # the base assigned or prepended the frame itself

    def store(self, key: int) -> None:
        if self.candidate is None:
            raise RuntimeError("write_memory before accept on this frame")
        layers = [list(layer) for layer in self.candidate]  # own lists: forget_slot edits them per entry
        self.entries[key] = MemoryEntry(layers, list(self.raw_id), self.label.to(torch.uint8))
        self.assemble()

    def drop(self, key: int) -> None:
        if self.entries.pop(key, None) is not None:
            self.assemble()

    def forget_slot(self, slot: int) -> None:
        """Erase one identity from every entry: its pixels become background, ID_V is re-fused."""
        del self.slots[slot]
        for entry in self.entries.values():
            if not (entry.label == slot).any():
                continue
            entry.label = entry.label.masked_fill(entry.label == slot, 0)
            id_emb = self.assign_identity(one_hot_mask(entry.label, self.max_obj_num))
            for layer, block, raw in zip(entry.layers, self.AOT.LSTT.layers, entry.raw_id):
                layer[3] = block.fuse_key_value_id(None, raw, id_emb)[1]
        self.assemble()

    def assemble(self) -> None:
        if not self.entries:
            return
        entries = [self.entries[k] for k in sorted(self.entries)]
        self.long_term_memories = [
            [None if parts[0] is None else torch.cat(parts, dim=0) for parts in zip(*layer_entries)]
            for layer_entries in zip(*(e.layers for e in entries))]

    def memory_bytes(self) -> int:
        return sum(e.nbytes() for e in self.entries.values())
