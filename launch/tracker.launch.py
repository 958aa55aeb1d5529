"""Launch the HQ-SMem tracker (a lifecycle node).

    ros2 launch hqsmem_ros tracker.launch.py image_topic:=/camera/image_raw backend:=cpu
    ros2 launch hqsmem_ros tracker.launch.py autostart:=false   # a lifecycle manager configures it

With compressed:=true the node subscribes to <image_topic>/compressed (image_transport's naming).
The launch arguments override the values of params_file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("hqsmem_ros"), "config", "tracker.yaml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="Parameter file for the node (see config/tracker.yaml)"),
        DeclareLaunchArgument("image_topic", default_value="image",
                              description="Camera topic (sensor_msgs/Image), remapped onto the node's 'image'"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics"),
        DeclareLaunchArgument("backend", default_value="auto", choices=["auto", "cpu", "hqsmem"],
                              description="Base model: hqsmem (GPU pipeline), cpu, or auto"),
        DeclareLaunchArgument("compressed", default_value="false", choices=["true", "false"],
                              description="Subscribe to <image_topic>/compressed instead"),
        DeclareLaunchArgument("autostart", default_value="true", choices=["true", "false"],
                              description="Configure and activate on start (false: a lifecycle manager does)"),
    ]
    tracker = LifecycleNode(
        package="hqsmem_ros",
        executable="tracker_node",
        name="hqsmem_tracker",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "backend": LaunchConfiguration("backend"),
                "compressed": ParameterValue(LaunchConfiguration("compressed"), value_type=bool),
                "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
            },
        ],
        remappings=[("image", LaunchConfiguration("image_topic"))],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription(arguments + [tracker])
