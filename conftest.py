"""Loads the InfraLens pytest plugin: the lab seam, check markers, learner feedback and progress."""

pytest_plugins = ["infralens.plugin"]
