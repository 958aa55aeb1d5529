"""The ROS 2 adapter: conversion, parameters, wiring and QoS around ``hqsmem_ros.core`` (no model code here)."""
