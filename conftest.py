"""Loads the InfraLens pytest plugin (the lab seam, check markers, learner feedback and progress).

Installed checkouts load it through the ``pytest11`` entry point already; naming it here covers a
checkout that runs pytest before ``pip install -e .``. ``pytester`` serves the repository's own
tests of the plugin (tests/), which run pytest on small synthetic checkouts.
"""

pytest_plugins = ["infralens.plugin", "pytester"]
