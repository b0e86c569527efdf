import pytest
import torch

from karmma.models.box_transformer import BoxTransformerConfig

CONFIG = BoxTransformerConfig(dim=32, depth=2, num_heads=4, dropout=0.0)
SHAPE = (6, 4, 6)


def test_tokens_shape():
    extractor = CONFIG.build(SHAPE)
    tokens = extractor(CONFIG.example_input(SHAPE, 3))
    assert tokens.shape == (3, 6, 32) == (3, CONFIG.num_tokens(SHAPE), CONFIG.token_dim)


def test_empty_slots_are_ignored_and_empty_clips_are_finite():
    extractor = CONFIG.build(SHAPE).eval()
    boxes = CONFIG.example_input(SHAPE, 1)
    boxes[..., 2:, 4] = 0.0  # slots 2 and 3 empty
    noisy = boxes.clone()
    noisy[..., 2:, :4] = torch.rand_like(noisy[..., 2:, :4])
    with torch.no_grad():
        assert torch.allclose(extractor(boxes), extractor(noisy), atol=1e-6)
        empty = torch.zeros(1, *SHAPE)
        assert torch.isfinite(extractor(empty)).all()
        # real boxes matter
        assert not torch.allclose(extractor(boxes), extractor(empty))


def test_wrong_feature_count():
    with pytest.raises(ValueError, match="6 features"):
        CONFIG.build((6, 4, 5))
