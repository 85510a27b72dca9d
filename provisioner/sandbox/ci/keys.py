"""The keywords GitLab accepts where, and its limits (``lib/gitlab/ci/config/entry/*.rb``)."""

from __future__ import annotations

DEFAULT_STAGES = ("build", "test", "deploy")
EDGE_STAGES = (".pre", ".post")
MAX_EXTENDS_DEPTH = 10
MAX_REFERENCE_DEPTH = 10
MAX_SCRIPT_DEPTH = 10
MAX_INCLUDES = 150

JOB_WHEN = ("on_success", "on_failure", "always", "manual", "delayed")
RULE_WHEN = ("on_success", "on_failure", "always", "never", "manual", "delayed")
WORKFLOW_WHEN = ("always", "never")
ARTIFACTS_WHEN = ("on_success", "on_failure", "always")

# Root keys that are not jobs (``lib/gitlab/ci/config/entry/root.rb``).
RESERVED_ROOT_KEYS = frozenset(
    {
        "default",
        "include",
        "stages",
        "types",
        "variables",
        "workflow",
        "spec",
        "image",
        "services",
        "before_script",
        "after_script",
        "cache",
    }
)
LEGACY_GLOBAL_KEYS = ("image", "services", "before_script", "after_script", "cache")

JOB_KEYS = frozenset(
    {
        "after_script",
        "allow_failure",
        "artifacts",
        "before_script",
        "cache",
        "coverage",
        "dast_configuration",
        "dependencies",
        "environment",
        "extends",
        "hooks",
        "id_tokens",
        "identity",
        "image",
        "inherit",
        "interruptible",
        "manual_confirmation",
        "needs",
        "only",
        "except",
        "pages",
        "parallel",
        "publish",
        "release",
        "resource_group",
        "retry",
        "rules",
        "run",
        "script",
        "secrets",
        "services",
        "stage",
        "start_in",
        "tags",
        "timeout",
        "trigger",
        "variables",
        "when",
    }
)
DEFAULT_KEYS = frozenset(
    {
        "after_script",
        "artifacts",
        "before_script",
        "cache",
        "hooks",
        "id_tokens",
        "identity",
        "image",
        "interruptible",
        "retry",
        "services",
        "tags",
        "timeout",
    }
)
ARTIFACTS_KEYS = frozenset(
    {
        "access",
        "exclude",
        "expire_in",
        "expose_as",
        "name",
        "paths",
        "public",
        "reports",
        "untracked",
        "when",
    }
)
RULE_KEYS = frozenset(
    {
        "allow_failure",
        "changes",
        "exists",
        "if",
        "interruptible",
        "needs",
        "start_in",
        "variables",
        "when",
    }
)
WORKFLOW_RULE_KEYS = frozenset({"if", "changes", "exists", "when", "variables", "auto_cancel"})

FILTERED_OUT = "Pipeline filtered out by workflow rules."
