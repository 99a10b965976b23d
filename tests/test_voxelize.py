"""voxelize must return exactly what the plain np.unique(axis=0) baseline returns."""

from __future__ import annotations

import numpy as np
import pytest

from beep3d.data.voxelize import voxel_coords, voxelize


def baseline(xyz: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    coords, inverse = np.unique(voxel_coords(xyz, voxel_size), axis=0, return_inverse=True)
    return coords, inverse.reshape(-1)


def assert_same_as_baseline(xyz: np.ndarray, voxel_size: float) -> None:
    want_coords, want_inverse = baseline(xyz, voxel_size)
    coords, inverse = voxelize(xyz, voxel_size)
    assert coords.dtype == np.int32 and coords.shape == want_coords.shape
    assert inverse.dtype == np.int64 and inverse.shape == (len(xyz),)
    np.testing.assert_array_equal(coords, want_coords)
    np.testing.assert_array_equal(inverse, want_inverse)
    np.testing.assert_array_equal(coords[inverse], voxel_coords(xyz, voxel_size))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("voxel_size", [0.02, 0.05, 0.3])
def test_random_rooms_match_baseline(seed: int, voxel_size: float) -> None:
    rng = np.random.default_rng(seed)
    xyz = (rng.random((20_000, 3)) * [8.0, 6.0, 3.0] + rng.normal(0, 50, 3)).astype(np.float32)
    assert_same_as_baseline(xyz, voxel_size)


def test_float64_input_matches_baseline() -> None:
    xyz = np.random.default_rng(7).normal(0, 2, (5000, 3))
    assert_same_as_baseline(xyz, 0.1)


def test_negative_coordinates() -> None:
    xyz = np.array(
        [[-3.0, -2.5, -0.01], [-2.99, -2.5, 0.0], [-1.0, -1.0, -1.0], [-3.0, -2.5, -0.01]], np.float32
    )
    assert_same_as_baseline(xyz, 0.05)
    coords, _ = voxelize(xyz, 0.05)
    assert coords.min() == 0  # relative to the scene minimum


def test_single_point() -> None:
    coords, inverse = voxelize(np.array([[1.5, -2.0, 3.0]], np.float32), 0.02)
    np.testing.assert_array_equal(coords, [[0, 0, 0]])
    np.testing.assert_array_equal(inverse, [0])
    assert_same_as_baseline(np.array([[1.5, -2.0, 3.0]], np.float32), 0.02)


def test_duplicates_share_a_voxel() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((300, 3)).astype(np.float32)
    xyz = np.concatenate([base, base, base[::-1]])
    assert_same_as_baseline(xyz, 0.01)
    _, inverse = voxelize(xyz, 0.01)
    np.testing.assert_array_equal(inverse[:300], inverse[300:600])


def test_voxel_size_not_dividing_extent() -> None:
    # Extent 1.0 with voxel 0.3: the last voxel is partly empty; points on exact multiples too.
    xyz = np.array([[0.0, 0.0, 0.0], [0.3, 0.6, 0.9], [1.0, 1.0, 1.0], [0.29999, 0.3, 0.60001]], np.float64)
    assert_same_as_baseline(xyz, 0.3)
    assert voxel_coords(xyz, 0.3).max() == 3


def test_all_points_in_one_voxel_and_flat_axes() -> None:
    xyz = np.zeros((50, 3), np.float32)
    xyz[:, 0] = np.linspace(0, 10, 50)  # y and z have zero extent
    assert_same_as_baseline(xyz, 0.5)
    coords, inverse = voxelize(np.full((10, 3), 4.0, np.float32), 1.0)
    assert coords.shape == (1, 3) and (inverse == 0).all()


def test_wide_grid_without_room_for_packed_index() -> None:
    # ~2^50 possible keys + 15 index bits > 63: the argsort path instead of the packed sort.
    xyz = np.random.default_rng(3).random((20_000, 3)) * 100.0
    xyz[:50] = xyz[50:100]  # some shared voxels
    assert_same_as_baseline(xyz, 1e-3)


def test_huge_grid_falls_back_exactly() -> None:
    # Extents whose product overflows an int64 key: the row-sort path must give the same answer.
    xyz = np.array([[0, 0, 0], [2e9, 2e9, 2e9], [1e9, 5, 2e9], [1e9, 5, 2e9], [3, 2e9, 0]], np.float64)
    assert_same_as_baseline(xyz, 1.0)


def test_empty_input() -> None:
    coords, inverse = voxelize(np.zeros((0, 3), np.float32), 0.02)
    assert coords.shape == (0, 3) and coords.dtype == np.int32
    assert inverse.shape == (0,) and inverse.dtype == np.int64


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="voxel_size"):
        voxelize(np.zeros((3, 3)), 0.0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxelize(np.zeros((3, 2)), 0.1)
    with pytest.raises(ValueError, match="overflow"):
        voxel_coords(np.array([[0.0, 0, 0], [1e12, 0, 0]]), 1e-3)
