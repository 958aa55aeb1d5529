"""hqsmem_ros: HQ-SMem video object tracking and segmentation for ROS 2.

This top-level package imports no ROS so that the algorithm core (``hqsmem_ros.core``) can be
installed and tested without a ROS distribution.
"""

import pkgutil

# The generated msg/ and srv/ modules live in the installed copy of this package (colcon builds them).
# Run from a source checkout, Python finds this folder first: extending the search path to every
# ``hqsmem_ros`` folder on sys.path lets ``hqsmem_ros.msg`` resolve to the installed one all the same.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
