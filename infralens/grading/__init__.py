"""The teacher's half of the tooling: grading a class, and the boundary around untrusted learner code.

* :mod:`~infralens.grading.batch` grades a folder of submissions, one judging process each;
* :mod:`~infralens.grading.remote`, :mod:`~infralens.grading.worker` and :mod:`~infralens.grading.wire`
  are the untrusted-code boundary: the judge's proxies, the learner's process, and the data-only
  format between them;
* :mod:`~infralens.grading.reports` writes the gradebooks (CSV, JSON, Gradescope, JUnit);
* :mod:`~infralens.grading.release` writes the student version and the Gradescope bundle.

The learner's half (plugin, loader, feedback, progress, hints) lives at the top of the package.
"""
