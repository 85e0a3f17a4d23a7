"""The optional 2-D patch critic: shapes, spectral norm, off in the reference config."""

import pytest
import torch
from torch.nn.utils import parametrize

from melganvc.config import Config, apply_overrides
from melganvc.errors import UserError
from melganvc.models.patch_critic import PatchCritic, build_patch_critic


def test_one_score_per_patch_and_hidden_maps() -> None:
    critic = PatchCritic(n_mels=40, channels=4)
    maps = critic.features(torch.rand(3, 40, 24) * 2 - 1)
    assert [tuple(m.shape) for m in maps] == [(3, 4, 20, 12), (3, 8, 10, 6), (3, 16, 5, 3),
                                              (3, 5, 3)]
    assert torch.equal(critic(torch.zeros(2, 40, 24)), critic.features(torch.zeros(2, 40, 24))[-1])
    assert all(parametrize.is_parametrized(conv, "weight") for conv in [*critic.convs, critic.score])
    with pytest.raises(ValueError, match="PatchCritic"):
        critic(torch.zeros(1, 41, 24))


def test_built_from_config_only_when_asked() -> None:
    assert build_patch_critic(Config()) is None
    cfg = apply_overrides(Config(), ["model.patch_critic_channels=8"]).validate()
    critic = build_patch_critic(cfg)
    assert critic is not None and critic.hparams["channels"] == 8
    with pytest.raises(UserError, match="patch_critic_channels"):
        apply_overrides(Config(), ["model.patch_critic_channels=-1"]).validate()
