"""Command-line tools around the tracker: ``replay`` (a bag into the running node over DDS, outputs
recorded), ``offline`` (the core over a bag, video or DAVIS folder, no DDS), ``evaluate`` (J, F, J&F and
the VOTS measures), ``sample_bag`` and ``demo``; ``weights`` (the GPU pipeline's checkpoints);
``benchmark_cpu``, ``benchmark_gpu`` and ``soak`` (measurements, not tests). ``bags`` is the rosbag2 I/O
they share."""
