"""driftline's numerical core.

Reference profiles of the training data, bounded and mergeable window sketches, and the
drift and data-quality tests that compare one with the other. Pure functions and small
value types over numpy arrays: no I/O beyond reading and writing a profile file, no
asyncio, no logging of data.
"""

from detectors.profile import Profile, build_profile, load_profile
from detectors.schema import Column, Kind, Role, Schema
from detectors.sketch import WindowSketch

__all__ = [
    "Column",
    "Kind",
    "Profile",
    "Role",
    "Schema",
    "WindowSketch",
    "build_profile",
    "load_profile",
]
