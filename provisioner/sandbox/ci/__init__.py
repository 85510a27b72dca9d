"""The sandbox's `.gitlab-ci.yml` processor: YAML in, a frozen :class:`PipelineSpec` out.

It follows GitLab's own pipeline of transformations (``Gitlab::Ci::Config#build_config``):

1. load the YAML safely (GitLab's ``!reference`` tag included);
2. merge included files (``local``, ``project`` with ``ref``/``file``, ``component``; the
   including file wins), each loaded with its ``spec:inputs`` header checked against
   ``include:inputs`` and ``$[[ inputs.NAME ]]`` interpolated;
3. resolve ``extends`` (hashes deep-merged, arrays and scalars replaced, later bases win, the
   job's own keys win; nesting deeper than 10 or a cycle is an error);
4. resolve ``!reference`` tags against the extended configuration;
5. validate the entries (unknown keys, missing ``script``, bad ``when``...) and the cross-job
   rules (stages, ``needs``, ``dependencies``), raising the *first* error as GitLab does;
6. evaluate ``workflow:rules``, then each job's ``rules`` (or ``only``/``except``).

Error texts reproduce GitLab's (``lib/gitlab/ci/config/entry/*.rb``,
``lib/gitlab/ci/yaml_processor.rb``, ``lib/gitlab/ci/config/external/file/local.rb``), so a
pipeline's ``yaml_errors`` read as they would on a real instance.

Jobs' ``variables`` are the *effective* YAML variables of the job: the inherited global
variables (subject to ``inherit:variables``), the job's own, and those set by the matching rule.
When a job uses ``needs`` without ``dependencies``, ``dependencies`` lists the needed jobs whose
artifacts it downloads (``needs:artifacts`` defaults to true), which is what GitLab does.

One module per step: ``loading`` (1), ``include`` and ``inputs`` (2), ``extends`` (3, 4),
``entries`` and ``keys`` (5, single entries), ``pipeline`` (5, cross-job rules; building the
jobs), ``rules`` and ``expressions`` (6); ``durations`` parses ``timeout``/``expire_in``;
``spec`` holds the results and ``errors`` the one error type.
"""

from __future__ import annotations

from provisioner.sandbox.ci.durations import parse_duration
from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.expressions import evaluate_expression
from provisioner.sandbox.ci.pipeline import load_pipeline
from provisioner.sandbox.ci.spec import ArtifactsSpec, JobSpec, PipelineSpec

__all__ = [
    "ArtifactsSpec",
    "CiConfigError",
    "JobSpec",
    "PipelineSpec",
    "evaluate_expression",
    "load_pipeline",
    "parse_duration",
]
