"""Launch the HQ-SMem tracker (a lifecycle node).

    ros2 launch hqsmem_ros tracker.launch.py image_topic:=/camera/image_raw backend:=cpu
    ros2 launch hqsmem_ros tracker.launch.py params_file:=my_tracker.yaml
    ros2 launch hqsmem_ros tracker.launch.py autostart:=false   # a lifecycle manager configures it

The params file is the one source of truth: backend, compressed and autostart override it only when
given on the command line (true/false in any case, or 1/0). With compressed:=true the node subscribes to
<image_topic>/compressed (image_transport's naming). Every process this launch starts after the node,
a camera driver included, gets the package's Fast DDS profile unless FASTDDS_DEFAULT_PROFILES_FILE is set.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode

SHARE = get_package_share_directory("hqsmem_ros")
BACKENDS = ("auto", "cpu", "hqsmem")
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}  # launch's own IfCondition spellings
NOT_GIVEN = ""


def _override(name: str, text: str):
    """A launch argument's value as the node parameter's type; raises with the accepted spellings."""
    if name == "backend":
        if text not in BACKENDS:
            raise ValueError(f"backend:={text!r} is not one of {', '.join(BACKENDS)}")
        return text
    if text.lower() not in BOOLEANS:
        raise ValueError(f"{name}:={text!r} is not a boolean (true/false, any case, or 1/0)")
    return BOOLEANS[text.lower()]


def _tracker(context):
    overrides = {}
    for name in ("backend", "compressed", "autostart"):
        text = LaunchConfiguration(name).perform(context).strip()
        if text != NOT_GIVEN:
            overrides[name] = _override(name, text)
    parameters = [LaunchConfiguration("params_file").perform(context)] + ([overrides] if overrides else [])
    return [LifecycleNode(
        package="hqsmem_ros",
        executable="tracker_node",
        name="hqsmem_tracker",
        namespace=LaunchConfiguration("namespace"),
        parameters=parameters,
        remappings=[("image", LaunchConfiguration("image_topic"))],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    given = "(default: the params file's value)"
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(SHARE, "config", "tracker.yaml"),
                              description="Parameter file for the node (see config/tracker.yaml)"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="Camera topic (sensor_msgs/Image), remapped onto the node's 'image'"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics"),
        DeclareLaunchArgument("backend", default_value=NOT_GIVEN,
                              description=f"Base model: auto, cpu or hqsmem (GPU pipeline) {given}"),
        DeclareLaunchArgument("compressed", default_value=NOT_GIVEN,
                              description=f"true: subscribe to <image_topic>/compressed instead {given}"),
        DeclareLaunchArgument("autostart", default_value=NOT_GIVEN,
                              description=f"Configure and activate on start; false: a lifecycle manager does {given}"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", EnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE", default_value=os.path.join(SHARE, "config", "fastdds.xml"))),
        OpaqueFunction(function=_tracker),
    ])
