"""The WGS84 ellipsoid: the one Geod every distance is measured with, and its radii of curvature."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pyproj import Geod

FloatArray = npt.NDArray[np.float64]
GEOD = Geod(ellps="WGS84")
A_M = 6378137.0
FLATTENING = 1 / 298.257223563
E2 = FLATTENING * (2 - FLATTENING)
MIN_MERIDIAN_RADIUS_M = A_M * (1 - E2)  # at the equator: the fewest metres per radian of latitude


def radii(lat_deg: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Meridional (M) and prime-vertical (N) radii of curvature, and cos(latitude)."""
    s = np.sin(np.radians(lat_deg))
    w = np.sqrt(1 - E2 * s * s)
    return A_M * (1 - E2) / (w**3), A_M / w, np.cos(np.radians(lat_deg))
