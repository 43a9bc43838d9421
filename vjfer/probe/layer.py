"""Which stored encoder layer a probe reads (`vjfer probe --layer K|concat|all`).

A cache made with `vjfer extract --layers` stacks L blocks layer-major along each clip's token axis
([V, L·N, D], one chunk). A one-layer probe carries a `LayerView` and takes its N tokens from each
clip itself (`select`), so heads of every layer share one read and keep the reference's parameters
at width D. `concat` is V-JEPA 2's multilevel form (facebookresearch/vjepa2 concatenates levels
along the token axis), which a multi-layer cache already is. K is a block as `vjfer cache info`
prints it (negative: from the end of the stored list); `all` is one head per stored block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from vjfer.errors import ConfigError

CONCAT = "concat"  # every stored layer, as one token sequence (V-JEPA 2's multilevel form)
ALL = "all"  # one head per stored layer, in one pass
LayerChoice = int | str  # a block number, or CONCAT (a head's layer, TrainConfig.layer)


@dataclass(frozen=True)
class LayerView:
    """One stored layer of clips that stack `layers` layers of `tokens` tokens each."""

    block: int  # the encoder block (0-based), as the cache records it
    index: int  # its place in the cache's stored list
    layers: int  # L, layers per clip
    tokens: int  # N, tokens of one layer

    def select(self, tokens: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """tokens [B, M, D] of M = k·L·N (k clips, joined or alone) -> [B, k·N, D], the layer's
        tokens of each clip in order; a mask [B, M] likewise."""
        B, M, D = tokens.shape
        per_clip = self.layers * self.tokens
        if M % per_clip:
            raise ConfigError(
                f"a probe of block {self.block} reads clips of {self.layers} layers "
                f"× {self.tokens} tokens; it got {M} tokens, not a multiple of "
                f"{per_clip}: score it on the cache it was trained from"
            )
        shape = (B, M // per_clip, self.layers, self.tokens)
        picked = tokens.view(*shape, D)[:, :, self.index].reshape(B, -1, D)
        if mask is not None:
            mask = mask.view(shape)[:, :, self.index].reshape(B, -1)
        return picked, mask


def select_layer(
    view: LayerView | None, tokens: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """What a probe with `view` reads of tokens [B, M, D] (every token when `view` is None)."""
    return (tokens, mask) if view is None else view.select(tokens, mask)


def _stored(blocks: tuple[int, ...] | None) -> str:
    return "the encoder's output alone" if blocks is None else f"blocks {list(blocks)}"


def resolve_layer(blocks: tuple[int, ...] | None, choice: LayerChoice) -> LayerChoice:
    """One `--layer` value against the blocks a cache stores (`Cache.layers`; None: the encoder's
    output alone) -> a head's layer: a stored block number, or CONCAT. On a cache of one layer
    every value that names it (-1, its block, concat) is CONCAT: the run is today's."""
    if choice == CONCAT:
        return CONCAT
    k = int(choice)
    stored = blocks or ()
    if blocks is None and k == -1:
        return CONCAT
    if k < 0 and -len(stored) <= k:
        k = stored[k]
    if k not in stored and blocks is None:  # block k may be the last: the output it holds
        raise ConfigError(
            f"--layer {choice}: the cache holds the encoder's output alone (its last block, "
            "through the final norm: --layer -1, concat or all); for another block extract "
            f"`vjfer extract --layers {choice},-1` (a cache of both)"
        )
    if k not in stored:
        raise ConfigError(
            f"--layer {choice}: the cache holds {_stored(blocks)}; give one of "
            f"{[*stored, *range(-len(stored), 0)]}, concat or all, or extract "
            f"the block with `vjfer extract --layers {choice}`"
        )
    return CONCAT if len(stored) == 1 else k


def layer_axis(blocks: tuple[int, ...] | None, choices: Sequence[LayerChoice]) -> list[LayerChoice]:
    """The layers a pass trains heads on (a grid axis beside lr, wd and seed): each `--layer`
    value resolved (`resolve_layer`), ALL as every stored block, duplicates dropped, in order."""
    out: list[LayerChoice] = []
    for choice in choices:
        every = list(blocks or [-1]) if choice == ALL else [choice]
        out += [resolve_layer(blocks, c) for c in every]
    return list(dict.fromkeys(out))


def layer_view(blocks: tuple[int, ...] | None, tokens: int, layer: LayerChoice) -> LayerView | None:
    """The view of a head of `layer` on a cache storing `blocks` of `tokens` tokens each; None
    when it reads every stored token (CONCAT, or a cache of one layer)."""
    layer = resolve_layer(blocks, layer)
    if layer == CONCAT or blocks is None:
        return None
    block = int(layer)
    return LayerView(block=block, index=blocks.index(block), layers=len(blocks), tokens=tokens)


def layer_label(layer: LayerChoice, blocks: Sequence[int] | None) -> str:
    """How a table names a head's layer: 'block K', 'concat of blocks a, b' or 'output'."""
    if layer != CONCAT:
        return f"block {layer}"
    return "output" if not blocks else f"concat of blocks {', '.join(map(str, blocks))}"
