"""Deep self-supervised metric learning for BRITS and DEARI (DEARI Sec. 4.2, Eqs. 19-21).

For each sample ``n`` of a mini-batch the forward and backward hidden sequences give two
representations ``R = f_r(f_SA(H))`` (Eq. 19): self-attention over the sequence, then the CLS
token, the last token or the mean. Anchor and positive are the two directions of one sample;
every other sample's representations are negatives. Pairs that violate the margin condition
(Eq. 20, in the similarity form of ``MultiSimilarityMiner(epsilon=margin)``: a negative more
similar than the least similar positive minus the margin, a positive less similar than the most
similar negative plus the margin) are mined, and the Multi-Similarity loss (Eq. 21) is applied
to them (``pytorch_metric_learning``; cosine similarity, its default). With several layers
(DEARI) the layers' hidden sequences are averaged first, so there is a single anchor/positive
pair per sample ("squeezing them into a single pair", Sec. 4.2).
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses, miners
from torch import Tensor, nn

from gapray.imputation.attention import attention_precision, transformer_encoder
from gapray.imputation.layers import encode_at


def pool_representation(encoded: Tensor, pooling: str) -> Tensor:
    """``f_r`` of Eq. 19 on an encoded sequence ``[B, 1 + T, H]`` (CLS first) or ``[B, T, H]``."""
    if pooling == "cls":
        return encoded[:, 0]
    if pooling == "last":
        return encoded[:, -1]
    if pooling == "mean":
        return encoded.mean(dim=1)
    raise ValueError(f"pooling must be 'cls', 'last' or 'mean', got {pooling!r}")


def direction_pairs(forward: Tensor, backward: Tensor) -> tuple[Tensor, Tensor]:
    """Embeddings ``[2B, H]`` and labels ``[2B]``: the two directions of sample ``n`` share label ``n``."""
    batch = forward.shape[0]
    labels = torch.arange(batch, device=forward.device)
    return torch.cat([forward, backward]), torch.cat([labels, labels])


class MetricLearningLoss(nn.Module):
    """Eq. 19-21: self-attention, pooling, Multi-Similarity mining and loss.

    ``forward(hidden_forward [B, T, H], hidden_backward [B, T, H]) -> scalar loss``; the same
    ``f_SA`` encodes both directions.
    """

    def __init__(self, hidden_size: int, pooling: str = "cls", margin: float = 0.1, alpha: float = 2.0,
                 beta: float = 50.0, base: float = 0.5, attention_layers: int = 1, attention_heads: int = 4,
                 attention_feedforward: int = 2048, fast: bool = False) -> None:
        super().__init__()
        pool_representation(torch.zeros(1, 1, 1), pooling)  # validates the name
        self.pooling, self.fast = pooling, fast
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden_size)) if pooling == "cls" else None
        self.encoder = transformer_encoder(hidden_size, attention_heads, attention_feedforward, attention_layers,
                                           fast=fast)
        self.miner = miners.MultiSimilarityMiner(epsilon=margin)
        self.loss = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)

    def representation(self, hidden_states: Tensor) -> Tensor:
        """``R = f_r(f_SA(H))`` (Eq. 19) of hidden states ``[B, T, H]`` (in their dtype)."""
        dtype = hidden_states.dtype
        if self.cls_token is not None:
            hidden_states = torch.cat([self.cls_token.expand(hidden_states.shape[0], -1, -1), hidden_states], dim=1)
        with attention_precision(self.fast, hidden_states.device):
            if self.pooling == "mean":
                return self.encoder(hidden_states).mean(dim=1).to(dtype)
            return encode_at(self.encoder, hidden_states, 0 if self.pooling == "cls" else -1).to(dtype)

    def forward(self, hidden_forward: Tensor, hidden_backward: Tensor) -> Tensor:
        both = self.representation(torch.cat([hidden_forward, hidden_backward]))
        forward, backward = both.chunk(2)
        return multi_similarity_loss(forward, backward, self.miner, self.loss)


def multi_similarity_loss(forward: Tensor, backward: Tensor, miner: miners.MultiSimilarityMiner,
                          loss: losses.MultiSimilarityLoss) -> Tensor:
    """Mine margin-violating pairs (Eq. 20) and apply the Multi-Similarity loss (Eq. 21); 0 if none."""
    embeddings, labels = direction_pairs(forward, backward)
    pairs = miner(embeddings, labels)
    return loss(embeddings, labels, pairs)
