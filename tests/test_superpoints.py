"""compute_superpoints: deterministic, contiguous, complete, and it follows real boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from beep3d.data.superpoints import SuperpointConfig, compute_superpoints, smallest_eigenvector
from beep3d.data.voxelize import voxelize

CFG = SuperpointConfig(voxel_size=0.04, k=0.3, normal_weight=1.0, color_weight=2.0, min_size=20)


def plane(origin, u, v, spacing, color, rng) -> tuple[np.ndarray, np.ndarray]:
    """Grid samples of origin + s*u + t*v with 2 mm noise and noisy colour: xyz (n, 3), rgb (n, 3)."""
    origin, u, v = (np.asarray(a, np.float64) for a in (origin, u, v))
    s, t = np.meshgrid(
        np.arange(0, 1, spacing / np.linalg.norm(u)),
        np.arange(0, 1, spacing / np.linalg.norm(v)),
        indexing="ij",
    )
    xyz = origin + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v + rng.normal(0, 0.002, (s.size, 3))
    rgb = np.clip(np.asarray(color) + rng.normal(0, 8, (s.size, 3)), 0, 255)
    return xyz.astype(np.float32), rgb.astype(np.uint8)


def two_surfaces(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two surfaces that meet along a line: xyz, rgb and which surface each point is on (0/1)."""
    rng = np.random.default_rng(seed)
    if kind == "corner":  # grey floor meets a red wall at a right angle
        a = plane((0, 0, 0), (2, 0, 0), (0, 2, 0), 0.02, (120, 120, 120), rng)
        b = plane((0, 0, 0.01), (0, 2, 0), (0, 0, 1.5), 0.02, (200, 40, 40), rng)
    elif kind == "colour":  # one flat floor, two colours
        a = plane((0, 0, 0), (1, 0, 0), (0, 2, 0), 0.02, (60, 60, 200), rng)
        b = plane((1.0, 0, 0), (1, 0, 0), (0, 2, 0), 0.02, (230, 200, 60), rng)
    elif kind == "orientation":  # same colour, a 90 degree fold
        a = plane((0, 0, 0), (2, 0, 0), (0, 2, 0), 0.02, (150, 150, 150), rng)
        b = plane((0, 0, 0.01), (0, 2, 0), (0, 0, 1.5), 0.02, (150, 150, 150), rng)
    else:
        raise ValueError(kind)
    xyz = np.concatenate([a[0], b[0]])
    rgb = np.concatenate([a[1], b[1]])
    side = np.repeat([0, 1], [len(a[0]), len(b[0])])
    return xyz, rgb, side


def boundary_distance(kind: str, xyz: np.ndarray) -> np.ndarray:
    """(N,) distance of each point to the line or plane where the two surfaces meet."""
    if kind == "colour":
        return np.abs(xyz[:, 0] - 1.0)
    return np.hypot(xyz[:, 0], xyz[:, 2])  # the corner line x = z = 0


def assert_respects_boundary(kind: str, xyz: np.ndarray, sp: np.ndarray, side: np.ndarray) -> None:
    on_b = np.bincount(sp, side)
    total = np.bincount(sp)
    majority = (on_b * 2 > total).astype(int)  # (S,) the surface most of each segment lies on
    stray = majority[sp] != side
    # Only voxels straddling the boundary can hold both surfaces' points (all of a voxel's points
    # share a superpoint), so every stray point must lie within about one voxel of it.
    assert boundary_distance(kind, xyz[stray]).max(initial=0.0) <= 2 * CFG.voxel_size
    assert stray.mean() < 0.02, stray.mean()
    assert set(sp[side == 0].tolist()) != set(sp[side == 1].tolist())


@pytest.mark.parametrize("kind", ["corner", "colour", "orientation"])
def test_segments_do_not_cross_a_boundary(kind: str) -> None:
    xyz, rgb, side = two_surfaces(kind)
    assert_respects_boundary(kind, xyz, compute_superpoints(xyz, rgb, CFG), side)


def test_output_is_contiguous_complete_and_deterministic() -> None:
    xyz, rgb, _ = two_surfaces("corner", seed=3)
    sp = compute_superpoints(xyz, rgb, CFG)
    again = compute_superpoints(xyz.copy(), rgb.copy(), CFG)
    assert sp.dtype == np.int32 and sp.shape == (len(xyz),)
    np.testing.assert_array_equal(sp, again)
    assert sp.min() == 0
    np.testing.assert_array_equal(np.unique(sp), np.arange(sp.max() + 1))  # every id in use


def test_points_of_one_voxel_share_a_superpoint_and_min_size_holds() -> None:
    xyz, rgb, _ = two_surfaces("colour", seed=5)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, rgb.shape).astype(np.uint8)  # colour noise: many tiny segments before merging
    sp = compute_superpoints(xyz, rgb, CFG)
    _, voxel = voxelize(xyz, CFG.voxel_size)
    first = np.full(voxel.max() + 1, -1)
    first[voxel] = sp
    np.testing.assert_array_equal(first[voxel], sp)
    voxels_per_segment = np.bincount(first)
    assert voxels_per_segment.min() >= CFG.min_size  # the scene is one connected surface


def test_uniform_plane_is_few_segments_and_k_controls_size() -> None:
    xyz, rgb = plane((0, 0, 0), (3, 0, 0), (0, 3, 0), 0.02, (128, 128, 128), np.random.default_rng(2))
    assert compute_superpoints(xyz, rgb, CFG).max() + 1 <= 3
    fine = SuperpointConfig(voxel_size=0.04, k=0.3, normal_weight=1.0, color_weight=2.0, min_size=20)
    coarse = SuperpointConfig(voxel_size=0.04, k=3.0, normal_weight=1.0, color_weight=2.0, min_size=20)
    noisy = np.random.default_rng(4).integers(0, 256, rgb.shape).astype(np.uint8)
    assert compute_superpoints(xyz, noisy, coarse).max() < compute_superpoints(xyz, noisy, fine).max()


def test_scan_sampled_coarser_than_the_voxels_still_holds_together() -> None:
    # 6 cm vertex spacing with 4 cm voxels: on the raw grid most voxels have no neighbour.
    rng = np.random.default_rng(8)
    xyz, rgb = plane((0, 0, 0), (3, 0, 0), (0, 3, 0), 0.06, (128, 128, 128), rng)
    xyz[:, :2] += rng.uniform(-0.01, 0.01, (len(xyz), 2)).astype(np.float32)
    sp = compute_superpoints(xyz, rgb, CFG)
    # Without growing the voxels: ~430 segments for 2500 points, ~390 of them under 10 points.
    sizes = np.bincount(sp)
    assert len(sizes) <= 50 and sizes.min() >= 10, (len(sizes), sizes.min())


def test_far_outlier_does_not_change_the_rest() -> None:
    # 4 cm voxels over 30,000 km per axis: packed neighbour keys would overflow int64, and
    # float32 coordinates relative to the outlier would lose every centimetre. Placed beyond the
    # maximum on every axis, it leaves the voxel grid of the other points where it was.
    xyz, rgb, _ = two_surfaces("colour", seed=9)
    outlier = np.array([[3e7, 3e7, 3e7]], np.float32)
    sp = compute_superpoints(np.concatenate([xyz, outlier]), np.concatenate([rgb, rgb[:1]]), CFG)
    np.testing.assert_array_equal(sp[:-1], compute_superpoints(xyz, rgb, CFG))
    assert sp[-1] == sp.max() and sp[-1] not in set(sp[:-1].tolist())


def test_isolated_clusters_keep_their_own_segment() -> None:
    rng = np.random.default_rng(6)
    xyz, rgb = plane((0, 0, 0), (1, 0, 0), (0, 1, 0), 0.02, (100, 100, 100), rng)
    speck = np.array([[5.0, 5.0, 5.0], [5.01, 5.0, 5.0]], np.float32)  # far away, 1 voxel < min_size
    sp = compute_superpoints(np.concatenate([xyz, speck]), np.concatenate([rgb, rgb[:2]]), CFG)
    assert sp[-1] == sp[-2] and sp[-1] not in set(sp[:-2].tolist())


def test_empty_and_tiny_inputs() -> None:
    assert compute_superpoints(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), CFG).shape == (0,)
    one = compute_superpoints(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), CFG)
    np.testing.assert_array_equal(one, [0])
    with pytest.raises(ValueError, match="rgb"):
        compute_superpoints(np.zeros((4, 3), np.float32), np.zeros((3, 3), np.uint8), CFG)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="voxel_size"):
        SuperpointConfig(voxel_size=0.0, k=0.3, normal_weight=1.0, color_weight=1.0, min_size=20)
    with pytest.raises(ValueError, match="min_size"):
        SuperpointConfig(voxel_size=0.05, k=0.3, normal_weight=1.0, color_weight=1.0, min_size=0)


def _upper(m: np.ndarray) -> np.ndarray:
    return m[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]]


def test_smallest_eigenvector_matches_eigh() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 3, 3))
    cov = a @ a.transpose(0, 2, 1)
    cov[:500, 2] *= 1e-3  # flat neighbourhoods, as on walls
    cov[:500, :, 2] *= 1e-3
    want = np.linalg.eigh(cov)[1][:, :, 0]
    got = smallest_eigenvector(_upper(cov))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.abs(np.einsum("ij,ij->i", got, want)), 1.0, atol=1e-6)


def test_smallest_eigenvector_degenerate_cases() -> None:
    cov = np.array(
        [
            np.diag([1.0, 1.0, 1.0]),  # isotropic: any unit vector
            np.diag([0.0, 0.0, 0.0]),  # a single point
            np.diag([1.0, 1.0, 2.0]),  # repeated smallest eigenvalue (a line-like neighbourhood)
            np.diag([3.0, 2.0, 1e-9]),  # a perfect plane z = const
        ]
    )
    got = smallest_eigenvector(_upper(cov))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-9)
    assert abs(got[2, 2]) < 1e-9  # orthogonal to the largest direction
    assert abs(abs(got[3, 2]) - 1.0) < 1e-9
