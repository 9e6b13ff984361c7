"""Loads the InfraLens pytest plugin (the lab seam, check markers, learner feedback and progress).

Installed checkouts load it through the ``pytest11`` entry point already; this line covers a
checkout that runs pytest before ``pip install -e .``.
"""

pytest_plugins = ["infralens.plugin"]
