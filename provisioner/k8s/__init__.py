"""Kubernetes runners as the gitlab-runner Helm chart deploys them.

- :mod:`values`: chart values and the token Secret for a registered kubernetes runner;
- :mod:`rbac`: least-privilege rules from the features a runner uses;
- :mod:`secret`: the token Secret (base64 without a trailing newline);
- :mod:`lint`: the chart users' known mistakes in values files and manifests;
- :mod:`chart`: the documented keys of the targeted chart version (``chart_keys.json``);
- :mod:`schemas`: Kubernetes' JSON schemas, offline (the kubernetes-validate adapter);
- :mod:`yaml_io` and :mod:`files`: YAML in and out, atomic writes with modes.

No Kubernetes API server runs where runnerctl is built: everything here is proven against
Kubernetes' schemas and the chart's own rules, not against a live cluster.
"""
