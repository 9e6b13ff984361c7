"""InfraLens Katas tooling: lab discovery, the lab loader, the pytest plugin, hints, progress and model presets.

This package is given to learners. It holds no lab's answer: model presets and other shared
*data* live here, every computation a lab asks for lives only in ``solutions/``.
"""

__version__ = "0.1.0"
