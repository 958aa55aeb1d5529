"""The HQ-SMem algorithm core: pure Python + numpy + torch, no ROS imports."""
