"""The point-cloud and graph networks (e2e.models POINT_MODELS): forward and backward on the three tasks'
shapes, outputs blind to the order of an event's points and to its padding, no gradient to padded points,
k-NN against a brute-force reference, determinism, and ONNX parity with a dynamic number of points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from e2e.inference.inputs import POINT_INPUTS
from e2e.inference.onnx_model import session, worst_difference
from e2e.models import POINT_MODELS, build_model
from e2e.models.points import knn, neighbour_valid, point_rank

# (channels, image size) of electron/photon, quark/gluon and jet mass (all 8 channels)
TASK_SHAPES = {"electron_photon": (2, (32, 32)), "quark_gluon": (3, (125, 125)), "jet_mass": (8, (125, 125))}
# the variants beyond the defaults that change the code path
VARIANTS = [
    ("particlenet", {"norm": "batch", "fusion": False, "k": 4}),
    ("particle_transformer", {"pair_bias": False, "pool": "mean"}),
    ("gnn", {"conv": "gatv2", "norm": "batch"}),
]
CASES = [(name, {}) for name in POINT_MODELS] + VARIANTS
IDS = [name + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "") for name, kw in CASES]
# parameters at the defaults, 3 channels, 1 output: the size a user picks with the name
PARAMETERS = {"particlenet": 46_817, "particle_transformer": 216_245, "gnn": 72_001}


def events(counts, channels: int, *, points: int | None = None, grid: int = 32, seed: int = 0):
    """A padded batch: event b has counts[b] distinct pixels of a grid x grid image (positions in [-1, 1])
    and random features; padded slots hold garbage (nonzero), which the models must ignore."""
    rng = np.random.default_rng(seed)
    size = points or max(counts)
    pixels = np.stack([rng.permutation(grid * grid)[:size] for _ in counts])
    positions = np.stack([pixels // grid, pixels % grid], -1).astype(np.float32) / (grid / 2) - 1
    mask = np.arange(size)[None, :] < np.asarray(counts)[:, None]
    features = rng.normal(size=(len(counts), size, channels)).astype(np.float32)
    positions[~mask], features[~mask] = 7.0, -3.0
    return torch.from_numpy(positions), torch.from_numpy(features), torch.from_numpy(mask)


def build(name: str, channels: int = 3, image_size=(125, 125), **kwargs):
    torch.manual_seed(0)
    return build_model(name, channels, 1, image_size, **kwargs)


def per_event_permutation(tensors, mask: torch.Tensor, seed: int = 1):
    """Each event's real points shuffled among themselves, the padding interleaved between them."""
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(mask.shape[1], generator=g) for _ in range(mask.shape[0])])
    take = [torch.gather(t, 1, order.view(*order.shape, *[1] * (t.dim() - 2)).expand_as(t)) for t in tensors]
    return take, order


@pytest.mark.parametrize("task", list(TASK_SHAPES))
@pytest.mark.parametrize("name", POINT_MODELS)
def test_forward_backward_on_each_task(name, task):
    """A few dozen points, an event with a single point and one with none: finite outputs and gradients."""
    channels, image_size = TASK_SHAPES[task]
    model = build(name, channels, image_size).train()
    points, features, mask = events([40, 23, 1, 0], channels)
    out = model(points, features, mask)
    assert out.shape == (4, 1) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() > 0 for g in grads) > len(grads) // 2


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_bf16_autocast(name, kwargs):
    """The GPU training path (bf16 autocast), here on the CPU: finite outputs and gradients, and eval
    outputs near float32's (knn computes its distances in float32 whatever the autocast)."""
    model = build(name, **kwargs)
    points, features, mask = events([40, 23, 1, 0], 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(points, features, mask)
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        model.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(points, features, mask)
        assert (low.float() - model(points, features, mask)).abs().max() < 0.05


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_blind_to_order_and_padding(name, kwargs):
    model = build(name, **kwargs).eval()
    points, features, mask = events([40, 33, 17, 5, 1], 3)
    with torch.no_grad():
        want = model(points, features, mask)
        (p, f, m), _ = per_event_permutation((points, features, mask), mask)
        assert (model(p, f, m) - want).abs().max() <= 1e-5
        padded = [torch.cat([t, t[:, :9]], dim=1) for t in (points, features)]  # garbage copies of real points
        more = torch.cat([mask, torch.zeros_like(mask[:, :9])], dim=1)
        assert (model(*padded, more) - want).abs().max() <= 1e-5
        alone = [
            model(points[b : b + 1, :n], features[b : b + 1, :n], mask[b : b + 1, :n])
            for b, n in enumerate([40, 33, 17, 5, 1])
        ]
        assert (torch.cat(alone) - want).abs().max() <= 1e-5


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_padded_points_get_no_gradient_and_move_nothing(name, kwargs):
    """Training mode (masked batch statistics, dropout off): padded inputs get exactly zero gradient, and
    the parameters' gradients do not change when garbage padding is appended."""
    points, features, mask = events([30, 21, 6], 3)
    grads = []
    for extra in (0, 11):
        model = build(name, dropout=0.0, **kwargs).train()
        p = torch.cat([points, torch.full_like(points[:, :extra], 0.3)], 1).requires_grad_()
        f = torch.cat([features, torch.full_like(features[:, :extra], 5.0)], 1).requires_grad_()
        m = torch.cat([mask, torch.zeros_like(mask[:, :extra])], 1)
        model(p, f, m).sum().backward()
        assert (p.grad[~m] == 0).all() and (f.grad[~m] == 0).all()
        assert f.grad[m].abs().sum() > 0
        grads.append(torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None]))
    assert (grads[0] - grads[1]).abs().max() <= 1e-5 * max(1.0, grads[0].abs().max().item())


def knn_reference(x: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Brute force: each real point's real others sorted by (float32 squared distance, lexicographic rank of
    their coordinates among the event's real points), first k; the query's own index fills what is left."""
    batch, points, dims = x.shape
    out = np.repeat(np.arange(points)[None, :, None], batch, 0).repeat(k, 2)
    for b in range(batch):
        real = [j for j in range(points) if mask[b, j]]
        rank = {j: sum(tuple(x[b, i]) < tuple(x[b, j]) for i in real) for j in real}
        for i in real:
            dist = {}
            for j in real:
                d = np.float32(0)
                for c in range(dims):
                    diff = np.float32(x[b, i, c] - x[b, j, c])
                    d = np.float32(d + diff * diff)
                dist[j] = d
            chosen = sorted((j for j in real if j != i), key=lambda j: (dist[j], rank[j]))[:k]
            out[b, i, : len(chosen)] = chosen
    return out


@pytest.mark.parametrize("dims,grid", [(2, 8), (2, 32), (5, 0)], ids=["dense-grid", "sparse-grid", "features"])
def test_knn_matches_brute_force(dims, grid):
    """Grids make equal distances common (dense-grid: nearly every distance has a twin); features with
    repeated values make exact ties in five dimensions."""
    rng = np.random.default_rng(dims + grid)
    counts = [30, 12, 3, 1, 0]
    if grid:
        x, _, mask = events(counts, 1, grid=grid, seed=grid)
    else:
        x = torch.from_numpy(rng.integers(-2, 3, size=(5, 30, dims)).astype(np.float32) * 0.25)
        mask = torch.arange(30)[None, :] < torch.tensor(counts)[:, None]
    for k in (1, 4, 16):
        got = knn(x, mask, k)
        assert got.shape == (5, x.shape[1], k)
        assert np.array_equal(got.numpy(), knn_reference(x.numpy(), mask.numpy(), k))
    valid = neighbour_valid(knn(x, mask, 16))
    assert (valid.sum(-1)[mask] == torch.clamp(mask.sum(1, keepdim=True) - 1, max=16).expand_as(mask)[mask]).all()
    assert not valid[~mask].any()


def test_knn_is_independent_of_the_order_of_the_points():
    x, _, mask = events([30, 20, 7], 1, grid=8, seed=3)
    (xp, mp), order = per_event_permutation((x, mask), mask, seed=4)
    want, got = knn(x, mask, 6), knn(xp, mp, 6)
    # got[b, i] indexes the permuted event: map back through order to the original slots
    mapped = torch.gather(order, 1, got.flatten(1)).view_as(got)
    assert torch.equal(mapped, torch.gather(want, 1, order[..., None].expand_as(want)))


def test_knn_ties_broken_by_rank_not_by_order():
    """Four neighbours at the same distance (a cross): k=2 takes the two first in (eta, phi) order, and a
    code (the positions' rank) decides ties in another space the same way whatever the slots."""
    cross = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    for order in ([0, 1, 2, 3, 4], [0, 4, 3, 2, 1], [0, 2, 4, 1, 3]):
        x = cross[:, order]
        chosen = x[0, knn(x, mask, 2)[0, 0]]
        assert chosen.tolist() == [[-1.0, 0.0], [0.0, -1.0]]
    same = torch.zeros(1, 5, 3)  # all equidistant in feature space: the code orders them
    code = point_rank(cross, mask)
    assert knn(same, mask, 4, code=code)[0, 0].tolist() == [4, 3, 1, 2]


@pytest.mark.parametrize("name", POINT_MODELS)
def test_deterministic(name):
    points, features, mask = events([25, 10], 3)
    first, second = build(name).eval(), build(name).eval()
    with torch.no_grad():
        assert torch.equal(first(points, features, mask), second(points, features, mask))
        assert torch.equal(first(points, features, mask), first(points, features, mask))


@pytest.mark.parametrize("name", POINT_MODELS)
def test_global_inputs_are_one_more_input(name):
    model = build(name, global_inputs=2).eval()
    points, features, mask = events([12, 5], 3)
    assert model.global_inputs == 2
    with torch.no_grad():
        a = model(points, features, mask, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        b = model(points, features, mask, torch.tensor([[1.0, 2.0], [0.0, 4.0]]))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="global input"):
        model(points, features, mask)
    with pytest.raises(ValueError, match="global input"):
        build(name)(points, features, mask, torch.ones(2, 2))


@pytest.mark.parametrize("name", POINT_MODELS)
def test_parameter_count(name):
    model = build(name)
    count = sum(p.numel() for p in model.parameters())
    print(f"{name}: {count:,} parameters")
    assert count == PARAMETERS[name]


def input_names(model) -> list[str]:
    """The graph's input names as export gives them (e2e.inference.inputs.POINT_INPUTS)."""
    return list(POINT_INPUTS[: 4 if model.global_inputs else 3])


def export(model, example, dynamic_globals: bool):
    batch, points = torch.export.Dim("batch"), torch.export.Dim("points")
    shapes = [{0: batch, 1: points}] * 3 + ([{0: batch}] if dynamic_globals else [])
    program = torch.onnx.export(
        model,
        example,
        dynamo=True,
        verbose=False,
        input_names=input_names(model),
        output_names=["output"],
        dynamic_shapes=tuple(shapes),
        opset_version=18,
    )
    return session(program.model_proto.SerializeToString())


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_onnx_parity_with_a_dynamic_number_of_points(name, kwargs):
    """Exported with 40 points (and, for one case, a jet-level input), run by onnxruntime on 57 points
    and another batch size: within the export stage's 1e-4 of PyTorch."""
    globals_ = 1 if kwargs.get("norm") == "batch" else 0
    model = build(name, global_inputs=globals_, **kwargs).eval()
    example = events([40, 26, 3], 3, seed=5)
    extra = (torch.randn(3, globals_),) if globals_ else ()
    ort = export(model, (*example, *extra), bool(globals_))
    assert [i.name for i in ort.get_inputs()] == input_names(model)
    points, features, mask = events([57, 44, 12, 1, 0], 3, seed=6)
    inputs = (points, features, mask, *((torch.randn(5, globals_),) if globals_ else ()))
    got = ort.run(None, {n: t.numpy() for n, t in zip(input_names(model), inputs)})[0]
    with torch.no_grad():
        want = model(*inputs).numpy()
    assert worst_difference(got, want) <= 1e-4
