"""GitLab adapters: the only code that imports python-gitlab or talks HTTP to GitLab.

- :mod:`.models`: typed values and enums;
- :mod:`.connection`: where GitLab is and which token to use (one precedence order);
- :mod:`.transport`: one retry policy for every call;
- :mod:`.runners`, :mod:`.projects`, :mod:`.pipelines`, :mod:`.packages`: the resources;
- :mod:`.graphql`: ``POST /api/graphql`` and its pager;
- :mod:`.client`: :class:`~provisioner.gitlab.client.GitLabAPI`, all of them in one object.

See docs/gitlab-client.md.
"""
