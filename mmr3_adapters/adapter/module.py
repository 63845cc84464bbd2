"""The consistency adapter (paper §5): a BiLSTM over the whole input sequence, max-pooled, and an
MLP to a few prefix embeddings that go in front of the unchanged sequence the frozen LLM reads.

Shapes: B rows, L positions (left-padded), H the LLM's embedding width, P the prefix length.

    embeds (B, L, H), mask (B, L)                  image features + text embeddings (step 2)
      -> real tokens only, left-aligned, packed     pads never reach the LSTM
      -> BiLSTM (lstm_layers, lstm_width per direction) -> (B, L, 2 * lstm_width)
      -> max over the real positions               pads never reach the max
      -> MLP -> (B, P * H) -> prefix (B, P, H)
      -> [pads | prefix | real tokens], mask [0 | 1 | 1]

The prefix sits next to each row's first real token, after the pads: T5's relative position bias
reads raw positions, so a prefix in front of the pads would sit at a distance from the prompt that
depends on how much the row was padded, and batch N would answer differently from batch 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmr3_adapters.adapter.config import AdapterConfig

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class ConsistencyAdapter(nn.Module):
    """Input-conditioned prefix embeddings for a frozen vision-language model.

    Called as `adapter(embeds, mask)`, it returns the longer sequence and mask that the LLM reads;
    that is the `embedding_transform` a generator applies between its steps 2 and 3. The adapter
    computes in its own parameters' dtype (float32 unless cast) with autocast off, so bf16 training
    of the backbone leaves its arithmetic alone.
    """

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        width, hidden = config.lstm_width, config.hidden_size
        self.lstm = nn.LSTM(
            input_size=hidden,
            hidden_size=width,
            num_layers=config.lstm_layers,
            dropout=config.lstm_dropout if config.lstm_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        self.mlp = nn.Sequential(
            nn.Linear(2 * width, config.mlp_width),
            _ACTIVATIONS[config.mlp_activation](),
            nn.Linear(config.mlp_width, config.prefix_length * hidden),
        )

    def prefix(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The prefix (B, P, H) for a left-padded batch, in the adapter's dtype."""
        check_left_padded(attention_mask)
        if embeds.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"the adapter was built for hidden size {self.config.hidden_size}, "
                f"the sequence is {embeds.shape[-1]} wide"
            )
        param = next(self.parameters())
        lengths = attention_mask.sum(dim=1)
        with torch.autocast(device_type=embeds.device.type, enabled=False):
            x = left_align(embeds, attention_mask).to(param.device, param.dtype)
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            real = torch.arange(x.shape[1], device=out.device)[None, :] < lengths.to(out.device)[:, None]
            pooled = out.masked_fill(~real[..., None], float("-inf")).amax(dim=1)
            prefix = self.mlp(pooled)
        return prefix.view(embeds.shape[0], self.config.prefix_length, self.config.hidden_size)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prefix = self.prefix(embeds, attention_mask).to(embeds.device, embeds.dtype)
        return insert_prefix(embeds, attention_mask, prefix)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | Path) -> Path:
        """`adapter_config.json` + `adapter_model.safetensors` in `directory` (checkpoint.save_adapter)."""
        from mmr3_adapters.adapter.checkpoint import save_adapter

        return save_adapter(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **checks: Any) -> ConsistencyAdapter:
        """A saved adapter, checked (checkpoint.load_adapter: backbone=, hidden_size=, device=, ...)."""
        from mmr3_adapters.adapter.checkpoint import load_adapter

        return load_adapter(directory, **checks)


def check_left_padded(attention_mask: torch.Tensor) -> None:
    """Raises ValueError unless every row is [0 ... 0 1 ... 1] with at least one 1."""
    if attention_mask.ndim != 2:
        raise ValueError(f"attention mask must be (batch, length), got shape {tuple(attention_mask.shape)}")
    steps = attention_mask[:, 1:].long() - attention_mask[:, :-1].long()
    if (steps < 0).any() or not attention_mask[:, -1].bool().all():
        raise ValueError("the adapter needs left-padded rows (mask 0...0 1...1); got a right- or mid-padded batch")


def left_align(embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's real tokens moved to the front (right padding, as pack_padded_sequence expects)."""
    n_pad = attention_mask.shape[1] - attention_mask.sum(dim=1)
    index = torch.arange(embeds.shape[1], device=embeds.device)[None, :] + n_pad[:, None].to(embeds.device)
    index = index.clamp(max=embeds.shape[1] - 1)
    return embeds.gather(1, index[..., None].expand(-1, -1, embeds.shape[2]))


def insert_prefix(
    embeds: torch.Tensor, attention_mask: torch.Tensor, prefix: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[pads | prefix | real tokens]` for each left-padded row, and its mask `[0 | 1 | 1]`.

    Differentiable in `prefix`. Shapes: embeds (B, L, H), mask (B, L), prefix (B, P, H) ->
    (B, P + L, H), (B, P + L).
    """
    check_left_padded(attention_mask)
    batch, length, hidden = embeds.shape
    n_prefix = prefix.shape[1]
    n_pad = (length - attention_mask.sum(dim=1)).to(embeds.device)[:, None]
    position = torch.arange(length + n_prefix, device=embeds.device)[None, :]
    # Output position -> index into cat([embeds, prefix]): pads stay, then the prefix, then the rest.
    index = torch.where(
        position < n_pad,
        position,
        torch.where(position < n_pad + n_prefix, length + position - n_pad, position - n_prefix),
    )
    source = torch.cat([embeds, prefix.to(embeds.dtype)], dim=1)
    out = source.gather(1, index[..., None].expand(-1, -1, hidden))
    mask = (position >= n_pad).to(attention_mask.dtype)
    return out, mask.expand(batch, -1).contiguous()
