"""data2vec 2.0's convolutional decoder: shapes, receptive field, residuals, parameters, argument checks."""

import pytest
import torch
import torch.nn.functional as F

from data2vec.pretraining.decoder import ConvDecoder


def _randomised(decoder: ConvDecoder, seed: int) -> ConvDecoder:
    """float64 copy with every parameter (biases included) drawn at random."""
    generator = torch.Generator().manual_seed(seed)
    decoder = decoder.double()
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.5)
    return decoder


# ---------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("projection_layers", [1, 2])
@pytest.mark.parametrize("output_dim", [None, 5])
def test_output_shape_1d(projection_layers, output_dim):
    decoder = ConvDecoder(16, dim=8, layers=2, kernel=3, projection_layers=projection_layers, output_dim=output_dim)
    out = decoder(torch.randn(2, 10, 16))
    assert out.shape == (2, 10, 16 if output_dim is None else 5)


@pytest.mark.parametrize("projection_layers", [1, 2])
@pytest.mark.parametrize("output_dim", [None, 5])
def test_output_shape_2d(projection_layers, output_dim):
    decoder = ConvDecoder(
        12, dim=6, layers=3, kernel=3, groups=3, spatial_dims=2, projection_layers=projection_layers,
        output_dim=output_dim,
    )
    out = decoder(torch.randn(2, 3 * 4, 12), grid=(3, 4))
    assert out.shape == (2, 12, 12 if output_dim is None else 5)


def test_projection_widths():
    decoder = ConvDecoder(16, dim=8, layers=1, kernel=3, projection_layers=3, projection_ratio=1.5, output_dim=4)
    linears = [module for module in decoder.projection if isinstance(module, torch.nn.Linear)]
    # first widens 8 -> int(8 * 1.5) = 12, the next keeps 12, the last maps to output_dim
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(8, 12), (12, 12), (12, 4)]


# ---------------------------------------------------------------------------- receptive field
@pytest.mark.parametrize("residual", [True, False])
def test_receptive_field_1d(residual):
    layers, kernel, length, position = 3, 5, 30, 15
    radius = layers * (kernel // 2)  # 6
    decoder = _randomised(ConvDecoder(4, dim=4, layers=layers, kernel=kernel, residual=residual), seed=0)
    inputs = torch.randn(1, length, 4, dtype=torch.float64, requires_grad=True)
    decoder(inputs)[0, position].sum().backward()
    reached = inputs.grad[0].abs().sum(-1) > 0  # (length,)
    assert torch.nonzero(reached).flatten().tolist() == list(range(position - radius, position + radius + 1))


def test_receptive_field_2d():
    layers, kernel, rows, columns = 2, 3, 11, 13
    radius = layers * (kernel // 2)  # 2 per axis
    decoder = _randomised(ConvDecoder(6, dim=4, layers=layers, kernel=kernel, spatial_dims=2), seed=1)
    inputs = torch.randn(1, rows * columns, 6, dtype=torch.float64, requires_grad=True)
    row, column = 5, 3
    decoder(inputs, grid=(rows, columns))[0, row * columns + column].sum().backward()
    reached = (inputs.grad[0].abs().sum(-1) > 0).view(rows, columns)  # row-major positions
    expected = torch.zeros(rows, columns, dtype=torch.bool)
    expected[row - radius : row + radius + 1, column - radius : column + radius + 1] = True
    assert torch.equal(reached, expected)


# ---------------------------------------------------------------------------- the computation
def _block(x: torch.Tensor, conv: torch.nn.Module, kernel: int, groups: int) -> torch.Tensor:
    """conv (padding kernel // 2) -> layer norm over channels without affine (eps 1e-5) -> exact GELU,
    (batch, channels, length) in and out."""
    x = F.conv1d(x, conv.weight, conv.bias, padding=kernel // 2, groups=groups)
    x = F.layer_norm(x.transpose(1, 2), (x.shape[1],), eps=1e-5).transpose(1, 2)
    return F.gelu(x)


@pytest.mark.parametrize("residual", [True, False])
def test_residual_is_added_where_shapes_match(residual):
    kernel, groups = 3, 2
    decoder = _randomised(ConvDecoder(6, dim=4, layers=3, kernel=kernel, groups=groups, residual=residual), seed=2)
    inputs = torch.randn(2, 9, 6, dtype=torch.float64)
    x = inputs.transpose(1, 2)
    x = _block(x, decoder.blocks[0].conv, kernel, groups)  # 6 -> 4 channels: never a residual
    for block in decoder.blocks[1:]:
        x = _block(x, block.conv, kernel, groups) + (x if residual else 0)
    expected = decoder.projection(x.transpose(1, 2))
    torch.testing.assert_close(decoder(inputs), expected, rtol=1e-12, atol=1e-12)


def test_first_block_gets_residual_when_input_dim_equals_dim():
    kernel = 5
    with_residual = _randomised(ConvDecoder(4, dim=4, layers=1, kernel=kernel), seed=3)
    without = ConvDecoder(4, dim=4, layers=1, kernel=kernel, residual=False).double()
    without.load_state_dict(with_residual.state_dict())
    inputs = torch.randn(2, 7, 4, dtype=torch.float64)
    block = _block(inputs.transpose(1, 2), with_residual.blocks[0].conv, kernel, 1)
    projection = with_residual.projection
    torch.testing.assert_close(with_residual(inputs), projection((block + inputs.transpose(1, 2)).transpose(1, 2)))
    torch.testing.assert_close(without(inputs), projection(block.transpose(1, 2)))
    assert not torch.allclose(with_residual(inputs), without(inputs))


# ---------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("spatial_dims", [1, 2])
def test_parameter_count_has_no_layer_norm_parameters(spatial_dims):
    input_dim, dim, layers, kernel, groups, output_dim = 12, 8, 3, 5, 2, 7
    decoder = ConvDecoder(
        input_dim, dim=dim, layers=layers, kernel=kernel, groups=groups, projection_layers=3,
        projection_ratio=1.5, spatial_dims=spatial_dims, output_dim=output_dim,
    )
    taps = kernel**spatial_dims
    convolutions = (dim * (input_dim // groups) * taps + dim) + (layers - 1) * (dim * (dim // groups) * taps + dim)
    linears = (8 * 12 + 12) + (12 * 12 + 12) + (12 * 7 + 7)  # 8 -> int(8 * 1.5) = 12 -> 12 -> 7
    assert sum(parameter.numel() for parameter in decoder.parameters()) == convolutions + linears
    assert not any("norm" in name for name, _ in decoder.named_parameters())


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"kernel": 4}, "odd"),
        ({"kernel": 0}, "odd"),
        ({"groups": 3}, "divisible by groups"),  # 8 % 3
        ({"groups": 4, "dim": 6}, "divisible by groups"),  # input_dim 8 divisible, dim 6 is not
        ({"spatial_dims": 3}, "spatial_dims"),
        ({"layers": 0}, "layers"),
    ],
)
def test_bad_constructor_arguments_raise(arguments, message):
    settings = {"dim": 8, "layers": 2, "kernel": 3} | arguments
    with pytest.raises(ValueError, match=message):
        ConvDecoder(8, **settings)


def test_bad_forward_arguments_raise():
    grid_decoder = ConvDecoder(8, dim=8, layers=1, kernel=3, spatial_dims=2)
    with pytest.raises(ValueError, match="grid"):
        grid_decoder(torch.randn(1, 12, 8))
    with pytest.raises(ValueError, match="grid"):
        grid_decoder(torch.randn(1, 12, 8), grid=(3, 5))
    sequence_decoder = ConvDecoder(8, dim=8, layers=1, kernel=3)
    with pytest.raises(ValueError, match="takes no grid"):
        sequence_decoder(torch.randn(1, 12, 8), grid=(3, 4))
    with pytest.raises(ValueError, match="shape"):
        sequence_decoder(torch.randn(1, 12, 6))
