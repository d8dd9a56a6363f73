"""LRCN activity recognition (Donahue et al. 2015, section 4): a CNN embeds every frame, an LSTM
runs over time and predicts the clip's class at every step; the clip's prediction is the
average of the per-step class probabilities. Trained and tested by lrcn.train.activity.

With a ``frame_encoder`` (an ``ImageEncoder`` with trainable blocks, or any module mapping
images [N, 3, S, S] to [N, D]), the model takes frames [B, T, 3, S, S] instead and runs the CNN
over all B x T frames in one batched forward, end to end.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from lrcn.models.temporal import FrameDeltas


class ActivityLRCN(nn.Module):
    """Frames or frame features [B, T, ...] -> per-step class logits [B, T, C]."""

    def __init__(self, feature_dim: int, num_classes: int, hidden_dim: int = 256, dropout: float = 0.5,
                 frame_encoder: nn.Module | None = None, delta_dims: int = 0, delta_gain: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        self.frame_encoder = frame_encoder
        self.dropout = nn.Dropout(dropout)
        self.deltas = FrameDeltas(delta_dims, delta_gain)       # motion: see lrcn.models.temporal.FrameDeltas
        self.lstm = nn.LSTM(feature_dim + delta_dims, hidden_dim, batch_first=True)
        self.classifier = nn.Linear(hidden_dim, num_classes)

    def frame_features(self, clips: Tensor) -> Tensor:
        """Frames [B, T, 3, S, S] -> [B, T, D] through the frame encoder (one forward over B*T
        frames); frame features [B, T, D] pass unchanged when there is no frame encoder."""
        if self.frame_encoder is None:
            return clips
        B, T = clips.shape[:2]
        return self.frame_encoder(clips.flatten(0, 1)).view(B, T, -1)

    def forward(self, clips: Tensor) -> Tensor:
        """-> per-step class logits [B, T, C]."""
        y, _ = self.lstm(self.dropout(self.deltas(self.frame_features(clips))))     # [B, T, H]
        return self.classifier(self.dropout(y))

    def predict_proba(self, clips: Tensor) -> Tensor:
        """Clip class probabilities [B, C]: the per-step softmax averaged over the clip."""
        return F.softmax(self(clips).float(), dim=-1).mean(dim=1)
